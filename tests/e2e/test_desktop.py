"""The desktop app for real: the `flexiproxy` binary as a tray app with its window, on a virtual display.

Each test builds its own little desktop session, all of it private to the test and torn down after:

* an X server (``Xvfb``, on a display number it picks itself),
* a D-Bus session bus (``dbus-daemon --session``), so the app's single-instance lock and the keychain
  never meet anyone else's,
* an unlocked gnome-keyring serving the Secret Service on that bus, with ``HOME`` and the XDG folders
  on a scratch directory (the real keychain of whoever runs the tests is never touched),

then starts the app with ``--port <free port> --data-dir <tmp>``, waits for ``/health``, finds its
window, and takes a screenshot. Screenshots are copied to ``target/e2e-artifacts/`` (or
``FLEXIPROXY_ARTIFACTS``) and, when set, ``FLEXIPROXY_SCREENSHOT_DIR``.

The tray has no host to draw it under Xvfb, but libayatana-appindicator still exports its menu on
D-Bus (dbusmenu) and its icon as a StatusNotifierItem, which is what a desktop's tray host reads and
clicks; the tests do the same: they read the labels (state, address, today's tokens), click Stop /
Start / "Start at login", and look at the icon file the item names (running, stopped, error); an
account that needs a new login (a Qwen login against the local OpenID provider, ``oidc_provider.py``)
adds an item to the menu.

The window tests skip only when ``Xvfb`` is missing (``.ci/setup`` installs it); any other missing tool
is a failure that names the package to install. The binary comes from ``FLEXIPROXY_BIN`` (default
``<repo>/target/debug/flexiproxy``); build it with ``cargo build -p flexiproxy``.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from browser import ARTIFACTS, browser_script, read_json_line, send_line
from desktop_session import (
    AUTOSTART_ENTRY,
    DASHBOARD_COLOURS,
    DesktopSession,
    START_TIMEOUT_S,
    api,
    binary,
    close_window,
    desktop,  # noqa: F401 (the fixture)
    desktop_exec_args,
    desktop_without_keychain,  # noqa: F401 (the fixture)
    free_port,
    health_refused,
    http_get,
    management_token,
    require_binary,
    stop_process,
    press_key,
    start_keyring,
    start_locked_keyring,
    tray_look,
    usage_rows,
    viewable_windows,
    wait_dialog,
    wait_for,
    wait_painted,
)
from oidc_provider import approve, oidc_server, qwen_device_login


def test_window_shows_the_dashboard_and_the_token_is_in_the_keychain(desktop: DesktopSession) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = desktop.launch("--port", str(port), "--data-dir", str(desktop.root / "data"))

    assert app.wait_health(base_url)["status"] == "ok"
    window = desktop.wait_window(viewable=True)
    assert window.width >= 800 and window.height >= 500, window

    # The page needs a moment to load and paint after the window maps: wait until it is painted.
    shot = wait_painted(desktop, window, "desktop.png", DASHBOARD_COLOURS)
    deviation, _ = desktop.image_stats(shot, window)
    assert deviation > 0.05, f"blank window? sd={deviation}: {shot}"

    # The management token was created in the (real) keychain, under this data dir's service name.
    items = [item for item in desktop.keychain_items() if item.get("username") == "management-token"]
    assert len(items) == 1, desktop.keychain_items()
    service = items[0]["service"]
    assert re.fullmatch(r"flexiproxy/[0-9a-f]{16}", service), service
    lookup = desktop.run("secret-tool", "lookup", "service", service, "username", "management-token")
    token = lookup.stdout.strip()
    assert token.startswith("fpm-")

    # The management API wants exactly that token, and the gateway says it uses the keychain.
    assert http_get(f"{base_url}/api/status")[0] == 401
    status, body = http_get(f"{base_url}/api/status", token=token)
    assert status == 200, body
    info = json.loads(body)
    assert info["secrets"]["kind"] == "OS keychain" and info["secrets"]["warning"] is None, info
    assert info["base_url"] == base_url

    # Graceful quit on SIGTERM: exit 0, the gateway stopped, and the token never reached the log.
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=20) == 0, app.logs()
    logs = app.logs()
    assert "stopping the gateway" in logs, logs
    assert token not in logs
    with pytest.raises(OSError):
        http_get(f"{base_url}/health", timeout=2)


def test_hidden_start_then_a_second_launch_shows_the_window(desktop: DesktopSession) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    data_dir = str(desktop.root / "data")
    first = desktop.launch("--hidden", "--port", str(port), "--data-dir", data_dir)
    first.wait_health(base_url)
    # The window exists (created hidden, so it can be shown at once) but is not mapped.
    time.sleep(1.0)
    window = desktop.find_window()
    assert window is None or not window.viewable, window

    # A second launch hands over to the first instance and leaves: no second gateway, no error.
    second = desktop.launch("--port", str(port), "--data-dir", data_dir, log_name="second.log")
    assert second.proc.wait(timeout=20) == 0, second.logs()
    assert "already in use" not in second.logs()
    desktop.wait_window(viewable=True)
    assert "launched again" in first.logs()
    assert first.proc.poll() is None
    assert http_get(f"{base_url}/health")[0] == 200

    first.proc.send_signal(signal.SIGINT)
    assert first.proc.wait(timeout=20) == 0, first.logs()


def test_tray_menu_shows_the_status_opens_the_dashboard_and_quits(desktop: DesktopSession) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = desktop.launch("--hidden", "--port", str(port), "--data-dir", str(desktop.root / "data"))
    app.wait_health(base_url)
    menu = desktop.tray_menu(app.proc.pid)

    items = menu.items()
    assert [item.label for item in items] == [
        f"Gateway running on 127.0.0.1:{port}",
        "Today: 0 tokens (in 0 · out 0 · cached 0)",
        "Open dashboard",
        "Copy base URL",
        "Stop gateway",
        "Start at login",
        "About FlexiProxy",
        "Quit",
    ], items
    assert [item.enabled for item in items] == [False, False, True, True, True, True, True, True], items
    assert [item.checked for item in items] == [None, None, None, None, None, False, None, None], items
    assert tray_look(desktop, menu) == "running"

    menu.click("Open dashboard")
    window = desktop.wait_window(viewable=True)
    # Closing the window only hides it: the app and the gateway keep running in the tray.
    close_window(desktop, window)
    desktop.wait_window(viewable=False)
    assert app.proc.poll() is None
    assert http_get(f"{base_url}/health")[0] == 200
    menu.click("Open dashboard")
    desktop.wait_window(viewable=True)
    menu.click("Copy base URL")
    deadline = time.monotonic() + 10
    while "base URL copied" not in app.logs() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"base URL copied to the clipboard base_url={base_url}" in app.logs()

    menu.click("Quit")
    assert app.proc.wait(timeout=20) == 0, app.logs()
    assert "stopping the gateway" in app.logs()


def test_the_tray_says_when_an_account_needs_login(desktop: DesktopSession) -> None:
    """A Qwen login against the local OpenID provider, then a refresh the provider refuses (the
    refresh token presented by another client): the account needs a new login, and the tray's
    menu gets an item that says so (pushed by the gateway's accounts channel, not polled)."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = desktop.launch("--hidden", "--port", str(port), "--data-dir", str(desktop.root / "data"))
    app.wait_health(base_url)
    token = management_token(desktop)
    menu = desktop.tray_menu(app.proc.pid)
    assert not any("need" in label for label in menu.labels()), menu.labels()

    with oidc_server() as issuer:
        status, current = api(base_url, token, "GET", "/api/accounts/endpoints")
        assert status == 200, current
        status, body = api(base_url, token, "PUT", "/api/accounts/endpoints", qwen_device_login(current, issuer))
        assert status == 200, body
        status, login = api(base_url, token, "POST", "/api/logins", {"kind": "qwen"})
        assert status == 201, login
        approve(issuer, login["user_code"])
        deadline = time.monotonic() + 20
        while login["status"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.2)
            _, login = api(base_url, token, "GET", f"/api/logins/{login['id']}")
        assert login["status"] == "done", login
        account = login["account"]["id"]

        refused = qwen_device_login(current, issuer, client_id="flexiproxy-deny")
        assert api(base_url, token, "PUT", "/api/accounts/endpoints", refused)[0] == 200
        status, body = api(base_url, token, "POST", f"/api/accounts/{account}/refresh")
        assert status == 409, body

    item = menu.wait_label("1 account needs login", lambda item: item.enabled)
    assert item.label == "1 account needs login: ada@example.com", menu.labels()
    assert menu.labels()[2] == item.label, menu.labels()
    # The gateway still serves everything else: the icon keeps its running look.
    assert tray_look(desktop, menu) == "running"
    menu.click(item.label)
    desktop.wait_window(viewable=True)

    # Logging out of it takes the item away again.
    assert api(base_url, token, "DELETE", f"/api/accounts/{account}")[0] == 204
    wait_for("the needs-login item to go", lambda: not any("need" in label for label in menu.labels()))
    menu.click("Quit")
    assert app.proc.wait(timeout=20) == 0, app.logs()


def test_busy_port_shows_the_error_then_start_brings_up_the_dashboard(desktop: DesktopSession) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        app = desktop.launch("--port", str(port), "--data-dir", str(desktop.root / "data"))
        window = desktop.wait_window(viewable=True)
        assert app.proc.poll() is None, app.logs()
        assert "already in use" in app.logs()
        menu = desktop.tray_menu(app.proc.pid)
        items = menu.items()
        expected = f"Gateway not running: port {port} on 127.0.0.1 is already in use"
        assert items[0].label.startswith(expected), items
        assert [(item.label, item.enabled) for item in items[1:]] == [
            ("Today: 0 tokens (in 0 · out 0 · cached 0)", False),
            ("Open dashboard", True),
            ("Copy base URL", False),
            ("Start gateway", True),
            ("Start at login", True),
            ("About FlexiProxy", True),
            ("Quit", True),
        ], items
        assert tray_look(desktop, menu) == "error"
        # The app offers a free port instead (one dialog); Cancel (Escape) declines, which
        # leaves the failure as it was.
        offer = wait_dialog(desktop, PORT_TITLE)
        shot = desktop.screenshot("port-offer-declined.png")
        assert len(viewable_windows(desktop, PORT_TITLE)) == 1
        press_key(desktop, offer, "Escape")
        wait_for("the offer declined", lambda: "was declined" in app.logs())
        assert f"port {port} is taken: offering port" in app.logs()
        assert not viewable_windows(desktop, PORT_TITLE)
        assert menu.status_line().startswith(expected)
        assert shot.exists()
        # The error page renders (not blank) in the window.
        wait_painted(desktop, window, "error.png", colours_at_least=50)

    # The port is free now: "Start gateway" starts it, and the window (built without a gateway,
    # so without the token script) is rebuilt on the dashboard.
    menu.click("Start gateway")
    base_url = f"http://127.0.0.1:{port}"
    app.wait_health(base_url)
    menu.wait_label("Gateway", lambda item: item.label == f"Gateway running on 127.0.0.1:{port}")
    assert tray_look(desktop, menu) == "running"
    assert menu.item("Copy base URL").enabled
    wait_for("the rebuilt window", lambda: "the window shows the dashboard (rebuilt)" in app.logs())
    window = desktop.wait_window(viewable=True)
    wait_painted(desktop, window, "desktop-after-error.png", DASHBOARD_COLOURS)
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=20) == 0, app.logs()


PORT_TITLE = "FlexiProxy: port in use"
KEYCHAIN_TITLE = "FlexiProxy: keychain problem"


def status_of(base_url: str, token: str) -> dict:
    status, body = api(base_url, token, "GET", "/api/status")
    assert status == 200, body
    return body  # type: ignore[return-value]


def test_first_run_shows_the_welcome_and_later_starts_stay_in_the_tray(desktop: DesktopSession) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    data_dir = str(desktop.root / "data")

    # First start with this data folder: the window opens, its dashboard has the welcome.
    app = desktop.launch("--port", str(port), "--data-dir", data_dir)
    app.wait_health(base_url)
    window = desktop.wait_window(viewable=True)
    token = management_token(desktop)
    assert status_of(base_url, token)["welcome"] is True
    wait_painted(desktop, window, "first-run-welcome.png", DASHBOARD_COLOURS)
    assert "FlexiProxy started (first run)" in app.logs()
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=20) == 0, app.logs()

    # A later start goes straight to the tray, and the welcome is over.
    app = desktop.launch("--port", str(port), "--data-dir", data_dir, log_name="later.log")
    app.wait_health(base_url)
    wait_for("the start logged", lambda: "FlexiProxy started (a later start)" in app.logs())
    time.sleep(1.0)
    window = desktop.find_window()
    assert window is None or not window.viewable, window
    assert status_of(base_url, token)["welcome"] is False
    assert management_token(desktop) == token
    # A second launch still shows the window.
    second = desktop.launch("--port", str(port), "--data-dir", data_dir, log_name="second.log")
    assert second.proc.wait(timeout=20) == 0, second.logs()
    desktop.wait_window(viewable=True)
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=20) == 0, app.logs()


def test_a_hidden_first_start_keeps_the_welcome_until_it_is_dismissed(desktop: DesktopSession) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = desktop.launch("--hidden", "--port", str(port), "--data-dir", str(desktop.root / "data"))
    app.wait_health(base_url)
    wait_for("the start logged", lambda: "FlexiProxy started (--hidden)" in app.logs())
    window = desktop.find_window()
    assert window is None or not window.viewable, window
    token = management_token(desktop)
    assert status_of(base_url, token)["welcome"] is True
    assert api(base_url, token, "POST", "/api/welcome/dismiss")[0] == 204
    assert status_of(base_url, token)["welcome"] is False
    assert "the welcome was dismissed" in app.logs()
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=20) == 0, app.logs()


def test_without_a_keychain_one_dialog_says_what_to_do(desktop_without_keychain: DesktopSession) -> None:
    session = desktop_without_keychain
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    token = "fpm-e2e-token-without-keychain-0123456789"
    session.env["FLEXIPROXY_MANAGEMENT_TOKEN"] = token
    app = session.launch("--hidden", "--port", str(port), "--data-dir", str(session.root / "data"))
    app.wait_health(base_url)
    dialog = wait_dialog(session, KEYCHAIN_TITLE)
    time.sleep(2.0)
    assert len(viewable_windows(session, KEYCHAIN_TITLE)) == 1
    wait_painted(session, dialog, "keychain-unavailable.png", colours_at_least=20)

    # The app keeps running with environment-only secrets and says so (log, API).
    assert app.proc.poll() is None
    info = status_of(base_url, token)
    assert info["secrets"]["kind"] == "environment only", info
    assert info["secrets"]["keychain_problem"] == "unavailable", info
    assert "no OS keychain is reachable" in info["secrets"]["warning"], info
    logs = app.logs()
    assert "showing the keychain dialog" in logs and "problem=Unavailable" in logs, logs
    assert "no OS keychain is reachable" in logs, logs
    assert token not in logs

    press_key(session, dialog, "Return")
    wait_for("the dialog closed", lambda: "the keychain dialog was closed" in app.logs())
    assert not viewable_windows(session, KEYCHAIN_TITLE)
    assert http_get(f"{base_url}/health")[0] == 200
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=20) == 0, app.logs()


def test_a_locked_keychain_gets_one_dialog_and_start_gateway_retries(
    desktop_without_keychain: DesktopSession,
) -> None:
    session = desktop_without_keychain
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    data_dir = str(session.root / "data")

    # A login keyring with FlexiProxy's token in it, as an earlier session left it.
    start_keyring(session)
    unlocked = session.processes[-1]
    app = session.launch("--hidden", "--port", str(port), "--data-dir", data_dir, log_name="unlocked.log")
    app.wait_health(base_url)
    token = management_token(session)
    wait_for("the start logged", lambda: "FlexiProxy started" in app.logs())
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=20) == 0, app.logs()
    stop_process(unlocked)

    # The keyring is running but locked: the gateway cannot read its token, and one dialog says
    # how to unlock; the window explains too, and the app keeps running in the tray.
    locked = start_locked_keyring(session)
    app = session.launch("--port", str(port), "--data-dir", data_dir, log_name="locked.log")
    dialog = wait_dialog(session, KEYCHAIN_TITLE)
    time.sleep(2.0)
    assert len(viewable_windows(session, KEYCHAIN_TITLE)) == 1
    wait_painted(session, dialog, "keychain-locked.png", colours_at_least=20)
    assert app.proc.poll() is None, app.logs()
    logs = app.logs()
    assert "showing the keychain dialog" in logs and "problem=Locked" in logs, logs
    assert "the OS keychain is locked" in logs, logs
    menu = session.tray_menu(app.proc.pid)
    # (The status line quotes the keyring's "Couldn't access…", which this menu reader skips.)
    assert "cannot start the gateway: the OS keychain is locked" in logs, logs
    assert menu.item("Start gateway").enabled, menu.labels()
    assert tray_look(session, menu) == "error"
    session.wait_window(viewable=True)
    press_key(session, dialog, "Return")
    wait_for("the dialog closed", lambda: "the keychain dialog was closed" in app.logs())

    # Unlocked (here: the daemon started again with the password), Start gateway retries.
    stop_process(locked)
    start_keyring(session)
    menu.click("Start gateway")
    app.wait_health(base_url)
    status, body = api(base_url, token, "GET", "/api/status")
    assert status == 200 and body["secrets"]["keychain_problem"] is None, body  # type: ignore[index]
    assert token not in app.logs()
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=20) == 0, app.logs()


def test_a_taken_port_is_swapped_for_a_free_one_and_saved(desktop: DesktopSession) -> None:
    data_dir = str(desktop.root / "data")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]

        # Save the taken port as the listen port (as Settings → Address does), from a first run
        # on another port.
        first_port = free_port()
        first_url = f"http://127.0.0.1:{first_port}"
        app = desktop.launch("--port", str(first_port), "--data-dir", data_dir)
        app.wait_health(first_url)
        token = management_token(desktop)
        status, body = api(first_url, token, "PUT", "/api/settings", {"listen": {"port": taken}})
        assert status == 200, body
        app.proc.send_signal(signal.SIGTERM)
        assert app.proc.wait(timeout=20) == 0, app.logs()

        # Started without --port, the saved port is taken: accept the offer (the dialog's
        # default button, Return).
        app = desktop.launch("--data-dir", data_dir, log_name="offer.log")
        offer = wait_dialog(desktop, PORT_TITLE)
        wait_for("the offer logged", lambda: "offering port" in app.logs())
        offered = int(re.search(rf"port {taken} is taken: offering port (\d+)", app.logs()).group(1))
        assert offered != taken
        wait_painted(desktop, offer, "port-offer.png", colours_at_least=20)
        press_key(desktop, offer, "Return")
        new_url = f"http://127.0.0.1:{offered}"
        app.wait_health(new_url)
        assert f"port {offered} saved as the listen port" in app.logs()
        menu = desktop.tray_menu(app.proc.pid)
        menu.wait_label("Gateway", lambda item: item.label == f"Gateway running on 127.0.0.1:{offered}")
        status, settings = api(new_url, token, "GET", "/api/settings")
        assert status == 200, settings
        assert settings["listen"]["saved_port"] == offered, settings  # type: ignore[index]
        assert settings["listen"]["from_command_line"] is False, settings  # type: ignore[index]
        wait_for("the dashboard", lambda: "the window shows the dashboard" in app.logs())
        app.proc.send_signal(signal.SIGTERM)
        assert app.proc.wait(timeout=20) == 0, app.logs()

    # The next start uses the saved port, without asking.
    app = desktop.launch("--data-dir", data_dir, log_name="next.log")
    app.wait_health(f"http://127.0.0.1:{offered}")
    wait_for("the start logged", lambda: "FlexiProxy started (a later start)" in app.logs())
    assert "offering port" not in app.logs()
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=20) == 0, app.logs()


def test_a_taken_command_line_port_is_swapped_for_this_run_only(desktop: DesktopSession) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        app = desktop.launch("--hidden", "--port", str(taken), "--data-dir", str(desktop.root / "data"))
        offer = wait_dialog(desktop, PORT_TITLE)
        wait_for("the offer logged", lambda: "offering port" in app.logs())
        offered = int(re.search(rf"port {taken} is taken: offering port (\d+)", app.logs()).group(1))
        press_key(desktop, offer, "Return")
        new_url = f"http://127.0.0.1:{offered}"
        app.wait_health(new_url)
        assert f"using port {offered} for this run only" in app.logs()
        token = management_token(desktop)
        status, settings = api(new_url, token, "GET", "/api/settings")
        assert status == 200, settings
        assert settings["listen"]["saved_port"] is None, settings  # type: ignore[index]
        # Stop and Start from the tray keep the accepted port for this run.
        menu = desktop.tray_menu(app.proc.pid)
        menu.click("Stop gateway")
        wait_for("/health refused after Stop", lambda: health_refused(new_url))
        wait_for("Start gateway in the menu", lambda: "Start gateway" in menu.labels())
        menu.click("Start gateway")
        app.wait_health(new_url)
        app.proc.send_signal(signal.SIGTERM)
        assert app.proc.wait(timeout=20) == 0, app.logs()


def test_the_about_box_shows_the_version_of_flexiproxy_version(desktop: DesktopSession) -> None:
    version_line = desktop.run(str(binary()), "--version").stdout.strip()
    assert re.fullmatch(r"flexiproxy \d+\.\d+\.\d+\S*", version_line), version_line
    version = version_line.split(" ", 1)[1]
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = desktop.launch("--hidden", "--port", str(port), "--data-dir", str(desktop.root / "data"))
    app.wait_health(base_url)
    token = management_token(desktop)
    assert status_of(base_url, token)["version"] == version

    menu = desktop.tray_menu(app.proc.pid)
    menu.click("About FlexiProxy")
    title = f"About FlexiProxy {version}"
    about = wait_dialog(desktop, title)
    # A second click while it is open does not stack another one.
    menu.click("About FlexiProxy")
    time.sleep(1.0)
    assert len(viewable_windows(desktop, title)) == 1
    assert f"showing the about box: FlexiProxy {version}" in app.logs()
    wait_painted(desktop, about, "about.png", colours_at_least=20)
    press_key(desktop, about, "Return")
    wait_for("the about box closed", lambda: not viewable_windows(desktop, title))
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=20) == 0, app.logs()


def test_the_login_entry_quotes_a_path_with_a_space_and_starts_in_the_tray(desktop: DesktopSession) -> None:
    folder = desktop.root / "My Apps"
    folder.mkdir()
    program = folder / "flexiproxy"
    shutil.copy2(binary(), program)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    data_dir = str(desktop.root / "data")
    app = desktop.launch("--hidden", "--port", str(port), "--data-dir", data_dir, program=program)
    app.wait_health(base_url)
    menu = desktop.tray_menu(app.proc.pid)
    entry = Path(desktop.env["HOME"]) / AUTOSTART_ENTRY
    menu.click("Start at login")
    menu.wait_label("Start at login", lambda item: item.checked is True)
    exec_line = next(line for line in entry.read_text().splitlines() if line.startswith("Exec="))
    assert exec_line == f'Exec="{program}" --hidden', exec_line
    args = desktop_exec_args(exec_line.removeprefix("Exec="))
    assert args == [str(program), "--hidden"], args
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=20) == 0, app.logs()

    # What the desktop runs at login: that command line (the port and data folder come from the
    # environment here, so the test keeps off the default port).
    desktop.env.update(FLEXIPROXY_PORT=str(port), FLEXIPROXY_DATA_DIR=data_dir)
    login = desktop.launch(*args[1:], program=Path(args[0]), log_name="login.log")
    login.wait_health(base_url)
    wait_for("the start logged", lambda: "FlexiProxy started (--hidden)" in login.logs())
    time.sleep(1.0)
    window = desktop.find_window()
    assert window is None or not window.viewable, window
    menu = desktop.tray_menu(login.proc.pid)
    assert menu.item("Start at login").checked is True
    menu.click("Start at login")
    wait_for("the autostart entry removed", lambda: not entry.exists())
    menu.click("Quit")
    assert login.proc.wait(timeout=20) == 0, login.logs()


def chat(base_url: str, key: str) -> None:
    """One chat request through an adapter, as a tool would send it."""
    body = {"model": "anything", "messages": [{"role": "user", "content": "hi"}]}
    request = urllib.request.Request(
        f"{base_url}/v1/chat/completions", data=json.dumps(body).encode(), method="POST"
    )
    request.add_header("Authorization", f"Bearer {key}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=15) as response:
        assert response.status == 200


def today_from_the_api(base_url: str, token: str, requests: int) -> str:
    """The tray's "Today" label as the recorded rows say it should read (waits for `requests` rows)."""
    rows = usage_rows(base_url, token, requests)
    assert len(rows) == requests, rows
    sums = {field: sum(row[field] or 0 for row in rows) for field in ("input_tokens", "output_tokens", "cached_tokens")}
    tokens_in, tokens_out, cached = sums["input_tokens"], sums["output_tokens"], sums["cached_tokens"]
    assert tokens_in > 0 and tokens_out > 0, rows
    return f"Today: {tokens_in + tokens_out:,} tokens (in {tokens_in:,} · out {tokens_out:,} · cached {cached:,})"


def test_today_counts_live_and_the_gateway_stops_and_starts_from_the_tray(
    desktop: DesktopSession, mock_upstream
) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = desktop.launch("--hidden", "--port", str(port), "--data-dir", str(desktop.root / "data"))
    app.wait_health(base_url)
    menu = desktop.tray_menu(app.proc.pid)
    token = management_token(desktop)

    # A provider at the local mock and an adapter for it, set up through the management API.
    status, body = api(
        base_url, token, "POST", "/api/providers/mock",
        {"url": mock_upstream.base_url, "api_key": "sk-upstream-desktop-0123456789"},
    )
    assert status in (200, 201), body
    status, adapter = api(base_url, token, "POST", "/api/adapters", {"provider_id": "mock", "model_id": "mock-small"})
    assert status == 201, adapter
    key = adapter["api_key"]  # type: ignore[index]

    # Requests through the adapter show up in the menu while the app runs.
    assert menu.item("Today:").label == "Today: 0 tokens (in 0 · out 0 · cached 0)"
    chat(base_url, key)
    chat(base_url, key)
    expected = today_from_the_api(base_url, token, 2)
    menu.wait_label("Today:", lambda item: item.label == expected)

    # Stop: the gateway shuts down, the app stays, the tray says so, the window explains.
    menu.click("Stop gateway")
    wait_for("/health refused after Stop", lambda: health_refused(base_url))
    menu.wait_label("Gateway", lambda item: item.label == f"Gateway stopped (was on 127.0.0.1:{port})")
    assert menu.item("Start gateway").enabled
    assert not menu.item("Copy base URL").enabled
    assert menu.item("Today:").label == expected
    assert tray_look(desktop, menu) == "stopped"
    assert app.proc.poll() is None
    wait_for("the stopped page", lambda: "the window shows that the gateway is stopped" in app.logs())
    menu.click("Open dashboard")
    window = desktop.wait_window(viewable=True)
    wait_painted(desktop, window, "desktop-stopped.png", colours_at_least=50)

    # Start while another program holds the port: the error state, with the reason.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        # The gateway's closed connections linger in TIME_WAIT on this port.
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", port))
        busy.listen()
        menu.click("Start gateway")
        menu.wait_label("Gateway", lambda item: item.label.startswith(f"Gateway not running: port {port}"))
        assert "already in use" in menu.status_line()
        assert tray_look(desktop, menu) == "error"
        assert menu.item("Start gateway").enabled

    # Start again: the same gateway (same port, same data), the day's count read back from its
    # database, the window back on the dashboard.
    menu.click("Start gateway")
    app.wait_health(base_url)
    menu.wait_label("Gateway", lambda item: item.label == f"Gateway running on 127.0.0.1:{port}")
    assert menu.item("Stop gateway").enabled
    assert tray_look(desktop, menu) == "running"
    menu.wait_label("Today:", lambda item: item.label == expected)
    wait_for("the dashboard again", lambda: "the window shows the dashboard" in app.logs())
    chat(base_url, key)
    expected = today_from_the_api(base_url, token, 3)
    menu.wait_label("Today:", lambda item: item.label == expected)
    wait_painted(desktop, desktop.wait_window(viewable=True), "desktop-restarted.png", DASHBOARD_COLOURS)

    menu.click("Quit")
    assert app.proc.wait(timeout=20) == 0, app.logs()
    assert token not in app.logs()


def test_start_at_login_from_the_tray_and_from_the_api(desktop: DesktopSession) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = desktop.launch("--hidden", "--port", str(port), "--data-dir", str(desktop.root / "data"))
    app.wait_health(base_url)
    menu = desktop.tray_menu(app.proc.pid)
    token = management_token(desktop)
    entry = Path(desktop.env["HOME"]) / AUTOSTART_ENTRY

    def desktop_api() -> object:
        status, body = api(base_url, token, "GET", "/api/desktop")
        assert status == 200, body
        return body

    assert not entry.exists()
    assert menu.item("Start at login").checked is False
    assert desktop_api() == {"available": True, "autostart": False}

    # The tray's check item writes the login entry, which starts the app in the tray.
    menu.click("Start at login")
    wait_for("the autostart entry", entry.exists)
    exec_line = next(line for line in entry.read_text().splitlines() if line.startswith("Exec="))
    assert exec_line.endswith(" --hidden"), exec_line
    assert str(binary().resolve()) in exec_line or str(binary()) in exec_line, exec_line
    menu.wait_label("Start at login", lambda item: item.checked is True)
    assert desktop_api() == {"available": True, "autostart": True}

    menu.click("Start at login")
    wait_for("the autostart entry removed", lambda: not entry.exists())
    menu.wait_label("Start at login", lambda item: item.checked is False)
    assert desktop_api() == {"available": True, "autostart": False}

    # The web UI's way (PUT /api/desktop) moves the tray's check too.
    status, body = api(base_url, token, "PUT", "/api/desktop", {"autostart": True})
    assert (status, body) == (200, {"available": True, "autostart": True})
    assert entry.exists()
    menu.wait_label("Start at login", lambda item: item.checked is True)
    status, body = api(base_url, token, "PUT", "/api/desktop", {"autostart": False})
    assert (status, body) == (200, {"available": True, "autostart": False})
    assert not entry.exists()
    menu.wait_label("Start at login", lambda item: item.checked is False)

    # And the Settings page's switch, clicked in a browser signed in to this app's gateway.
    scenario = {"url": base_url, "token": token, "screenshot": str(ARTIFACTS / "settings-autostart.png")}
    with browser_script("settings_autostart.mjs", scenario) as page:
        on = read_json_line(page)
        assert on["before"] is False and on["checked"] is True and on["state"] == "On", on
        assert on["message"] == "" and on["errors"] == [], on
        wait_for("the autostart entry from the Settings page", entry.exists)
        menu.wait_label("Start at login", lambda item: item.checked is True)
        send_line(page, "next")
        off = read_json_line(page)
        assert off["checked"] is False and off["state"] == "Off", off
        wait_for("the autostart entry removed from the Settings page", lambda: not entry.exists())
        menu.wait_label("Start at login", lambda item: item.checked is False)
        page.wait(timeout=30)

    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=20) == 0, app.logs()


def test_without_a_display_it_runs_headless(tmp_path: Path) -> None:
    """No DISPLAY or WAYLAND_DISPLAY: the app says so and serves headless instead of failing in GTK."""
    require_binary()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DISPLAY", "WAYLAND_DISPLAY") and not key.startswith("FLEXIPROXY_")
    }
    env.update(HOME=str(tmp_path), FLEXIPROXY_SECRETS="env", FLEXIPROXY_LOG="info")
    with (tmp_path / "stderr.log").open("wb") as stderr:
        proc = subprocess.Popen(
            [str(binary()), "--port", "0", "--data-dir", str(tmp_path / "data")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT_S)
        assert ready, "no 'listening' line within the start timeout"
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("FlexiProxy gateway listening on http://127.0.0.1:"), line
        assert http_get(f"{line.rsplit(' ', 1)[1]}/health")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert "no display found" in (tmp_path / "stderr.log").read_text()
    finally:
        stop_process(proc)
