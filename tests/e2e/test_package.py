"""The release ``.deb`` as a user gets it: what it declares, installing it, running the installed app,
upgrading over it and removing it.

The package comes from ``FLEXIPROXY_DEB`` (``.ci/run`` sets it after ``.ci/bundle``), else the newest
``.deb`` under ``<target>/release/bundle/deb/`` (``CARGO_TARGET_DIR`` or ``<repo>/target``). Without one
the tests skip and say how to build it (``bash .ci/bundle``); under ``CI`` they fail instead.

Where it is installed:

* **as root** (CI here runs as root): into this machine, the way the README tells users to,
  ``apt-get install -y ./flexiproxy_<v>_<arch>.deb`` (offline is fine once the dependencies are
  installed, which ``.ci/setup`` does), so dpkg's own bookkeeping, the maintainer steps, upgrades and
  ``dpkg -r``/``-P`` are the real thing. A ``flexiproxy`` package already installed is purged first,
  and the machine is left without the package at the end, so later tests keep using the binary built
  from source.
* **not root**: into a scratch root (``dpkg-deb -x``). The files, the desktop entry and running the
  packaged binary are still checked; installing, upgrading and removing need dpkg's database, which
  only root can write, so those tests skip (fail under ``CI``) saying so. Installing into the machine
  with sudo from a test would ask for a password or change a developer's system behind their back.

Running the installed app uses the ``desktop`` fixture of ``desktop_session.py`` (Xvfb, a private D-Bus
session, an unlocked gnome-keyring, the tray menu over dbusmenu) with ``program`` = the installed
``/usr/bin/flexiproxy``, and the app's default data folder under the test's scratch ``HOME``
(``~/.local/share/flexiproxy``), as a user's first start would have it. Requests go to the local mock
upstream (``mock_upstream`` from ``conftest.py``).

The upgrade is a newer package made from the built one (``dpkg-deb -R``, ``Version: <v>+1`` in
``DEBIAN/control``, ``dpkg-deb -b``) installed over the old one while the user's data, keychain entries
and settings stay where they are. The database migration is checked on a database seeded at an older
schema (the SQL of the earlier migrations, read from ``store/sqlite/schema.rs``, so the seed is exactly
what an older release wrote).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import sqlite3
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from desktop_session import (
    AUTOSTART_ENTRY,
    App,
    DesktopSession,
    api,
    desktop,  # noqa: F401 (the fixture)
    free_port,
    management_token,
    usage_rows,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "flexiproxy"
INSTALLED_BIN = Path("/usr/bin/flexiproxy")
DESKTOP_ENTRY = Path("usr/share/applications/FlexiProxy.desktop")
UNITS = {
    Path("usr/lib/systemd/system/flexiproxy.service"): REPO / "src-tauri/app/linux/flexiproxy.service",
    Path("usr/lib/systemd/user/flexiproxy.service"): REPO / "src-tauri/app/linux/flexiproxy-user.service",
}
LIBRARIES = ("libwebkit2gtk-4.1-0", "libgtk-3-0", "libayatana-appindicator3-1")
IS_ROOT = os.geteuid() == 0
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def unavailable(message: str) -> None:
    """Skips, or fails under CI (where everything the test needs must be there)."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def run(*command: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=300, check=check, env=env)


def find_deb() -> Path | None:
    given = os.environ.get("FLEXIPROXY_DEB")
    if given:
        return Path(given)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    found = glob.glob(str(target / "release" / "bundle" / "deb" / "*.deb"))
    return Path(max(found, key=os.path.getmtime)) if found else None


def workspace_version() -> str:
    """The one version: `[workspace.package] version`, as cargo reads it."""
    out = run("cargo", "metadata", "--no-deps", "--format-version", "1", "--manifest-path", str(REPO / "Cargo.toml"))
    packages = json.loads(out.stdout)["packages"]
    return next(p["version"] for p in packages if p["name"] == PACKAGE)


def control(deb: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in run("dpkg-deb", "-f", str(deb)).stdout.splitlines():
        if ":" in line and not line.startswith(" "):
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    return fields


def depends(field: str) -> list[str]:
    """Package names of a Depends/Recommends field, without version constraints or alternatives."""
    return [re.split(r"[\s(|]", part.strip(), maxsplit=1)[0] for part in field.split(",") if part.strip()]


@dataclass
class Installed:
    """Where the package's files are: `/` (installed with dpkg) or a scratch root (extracted)."""

    root: Path
    deb: Path
    version: str
    by_dpkg: bool

    @property
    def binary(self) -> Path:
        return self.root / INSTALLED_BIN.relative_to("/")


def dpkg_version() -> str | None:
    out = run("dpkg-query", "-W", "-f", "${Status}|${Version}", PACKAGE, check=False)
    status, _, version = out.stdout.partition("|")
    return version if status == "install ok installed" else None


def apt_install(deb: Path) -> None:
    """What the README tells users: `apt install ./x.deb` (apt resolves the dependencies)."""
    out = run("apt-get", "install", "-y", "-q", "--allow-downgrades", "--no-install-recommends",
              str(deb.resolve()), check=False, env=APT_ENV)
    assert out.returncode == 0, f"apt-get install {deb} failed:\n{out.stdout}\n{out.stderr}"


def purge() -> None:
    if run("dpkg-query", "-W", PACKAGE, check=False).returncode == 0:
        run("dpkg", "--purge", PACKAGE, env=APT_ENV)


@pytest.fixture(scope="module")
def deb() -> Path:
    found = find_deb()
    if found is None or not found.is_file():
        unavailable(
            f"no release .deb ({found or 'none under <target>/release/bundle/deb'}); build it with "
            "`bash .ci/bundle` (or set FLEXIPROXY_DEB)"
        )
    assert found is not None
    for tool in ("dpkg-deb", "dpkg-query"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is missing (apt-get install dpkg)")
    return found


@pytest.fixture(scope="module")
def version() -> str:
    return workspace_version()


@pytest.fixture(scope="module")
def installed(deb: Path, version: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    if not IS_ROOT:
        root = tmp_path_factory.mktemp("scratch-root")
        run("dpkg-deb", "-x", str(deb), str(root))
        yield Installed(root=root, deb=deb, version=version, by_dpkg=False)
        return
    purge()
    apt_install(deb)
    try:
        yield Installed(root=Path("/"), deb=deb, version=version, by_dpkg=True)
    finally:
        # Leave the machine as it was: later tests use the binary built from source.
        purge()


@pytest.fixture
def present(installed: Installed) -> Installed:
    """The built package's files in place (installed again if a test upgraded or removed it)."""
    if installed.by_dpkg and dpkg_version() != installed.version:
        apt_install(installed.deb)
        assert dpkg_version() == installed.version
    return installed


@pytest.fixture
def base_installed(present: Installed) -> Installed:
    """The built package installed in this machine by dpkg (root only)."""
    if not present.by_dpkg:
        unavailable("installing, upgrading and removing the .deb need root (dpkg's database); run as root")
    return present


# --- what the package declares -------------------------------------------------------------------


def test_the_control_file_names_the_package_its_version_and_dependencies(deb: Path, version: str, tmp_path: Path) -> None:
    fields = control(deb)
    assert fields["Package"] == PACKAGE, fields
    assert fields["Version"] == version, fields
    assert deb.name.startswith(f"{PACKAGE}_{version}_"), deb.name
    names = depends(fields.get("Depends", ""))
    for library in LIBRARIES:
        assert library in names, f"Depends lacks {library}: {fields.get('Depends')}"
    assert len(names) == len(set(names)), f"a dependency is listed twice: {fields['Depends']}"
    assert "gnome-keyring" in depends(fields.get("Recommends", "")), fields

    # The packaged binary says the same version (clap's --version exits before any window).
    run("dpkg-deb", "-x", str(deb), str(tmp_path))
    out = run(str(tmp_path / "usr/bin/flexiproxy"), "--version")
    assert out.stdout.strip() == f"flexiproxy {version}", out

    listing = run("dpkg-deb", "-c", str(deb)).stdout
    members = {line.split()[-1].removeprefix("./") for line in listing.splitlines() if line.strip()}
    for path in (INSTALLED_BIN.relative_to("/"), DESKTOP_ENTRY, *UNITS):
        assert str(path) in members, f"{path} is not in the package:\n{listing}"


def test_the_desktop_entry_icons_and_units_are_in_place(present: Installed) -> None:
    installed = present
    if installed.by_dpkg:
        status = run("dpkg-query", "-W", "-f", "${Status} ${Version}", PACKAGE).stdout
        assert status == f"install ok installed {installed.version}", status
    assert installed.binary.is_file() and os.access(installed.binary, os.X_OK)

    entry = (installed.root / DESKTOP_ENTRY).read_text()
    keys = dict(line.split("=", 1) for line in entry.splitlines() if "=" in line and not line.startswith("#"))
    assert keys["Name"] == "FlexiProxy", entry
    assert keys["Exec"].split()[0] == "flexiproxy", entry  # found on PATH: /usr/bin
    assert keys["Icon"] == "flexiproxy", entry
    assert keys["Type"] == "Application", entry
    assert "Development" in keys["Categories"].split(";"), entry

    icons = sorted(
        str(p.relative_to(installed.root)) for p in (installed.root / "usr/share/icons/hicolor").glob("*/apps/flexiproxy.png")
    )
    assert icons, "no icons under /usr/share/icons/hicolor/*/apps/"
    assert any("128x128" in icon for icon in icons) and any("32x32" in icon for icon in icons), icons

    for installed_path, source in UNITS.items():
        unit = (installed.root / installed_path).read_text()
        assert unit == source.read_text(), installed_path
        assert re.search(r"^ExecStart=/usr/bin/flexiproxy --headless\b", unit, re.MULTILINE), unit


# --- the installed app -----------------------------------------------------------------------------


def chat(base_url: str, key: str) -> str:
    body = {"model": "anything", "messages": [{"role": "user", "content": "hello from the package test"}]}
    request = urllib.request.Request(f"{base_url}/v1/chat/completions", data=json.dumps(body).encode(), method="POST")
    request.add_header("Authorization", f"Bearer {key}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=15) as response:
        assert response.status == 200
        answer = json.loads(response.read())
    return answer["choices"][0]["message"]["content"]


def quit_from_tray(desktop: DesktopSession, app: App) -> None:
    desktop.tray_menu(app.proc.pid).click("Quit")
    assert app.proc.wait(timeout=20) == 0, app.logs()


def start_installed(desktop: DesktopSession, installed: Installed, *args: str, log_name: str = "app.log") -> App:
    return desktop.launch(*args, program=installed.binary, log_name=log_name)


def status_of(base_url: str, token: str) -> dict[str, object]:
    status, body = api(base_url, token, "GET", "/api/status")
    assert status == 200, body
    return body  # type: ignore[return-value]


def set_up_routing(base_url: str, token: str, upstream_url: str) -> str:
    """A provider at the local mock and an adapter for it, through the management API; the key."""
    status, body = api(base_url, token, "POST", "/api/providers/mock",
                       {"url": upstream_url, "api_key": "sk-upstream-package-0123456789"})
    assert status in (200, 201), body
    status, adapter = api(base_url, token, "POST", "/api/adapters", {"provider_id": "mock", "model_id": "mock-small"})
    assert status == 201, adapter
    return adapter["api_key"]  # type: ignore[index]


def test_the_installed_app_starts_in_the_tray_and_serves_requests(
    desktop: DesktopSession, present: Installed, mock_upstream
) -> None:
    installed = present
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = start_installed(desktop, installed, "--port", str(port))
    assert app.wait_health(base_url)["status"] == "ok"
    desktop.wait_window(viewable=True)
    menu = desktop.tray_menu(app.proc.pid)
    assert menu.status_line() == f"Gateway running on 127.0.0.1:{port}", menu.labels()

    token = management_token(desktop)
    info = status_of(base_url, token)
    assert info["version"] == installed.version, info
    assert info["secrets"]["kind"] == "OS keychain", info  # type: ignore[index]
    data_dir = Path(desktop.env["XDG_DATA_HOME"]) / "flexiproxy"
    assert (data_dir / "flexiproxy.db").is_file() or any(data_dir.glob("*.db")), list(data_dir.iterdir())

    key = set_up_routing(base_url, token, mock_upstream.base_url)
    assert chat(base_url, key)
    rows = usage_rows(base_url, token, 1)
    assert len(rows) == 1 and rows[0]["provider_id"] == "mock" and rows[0]["status"] == 200, rows

    # "Start at login" points the login entry at the installed binary, starting in the tray.
    entry = Path(desktop.env["HOME"]) / AUTOSTART_ENTRY
    assert not entry.exists()
    menu.click("Start at login")
    wait_for("the autostart entry", entry.exists)
    exec_line = next(line for line in entry.read_text().splitlines() if line.startswith("Exec="))
    assert exec_line == f"Exec={installed.binary} --hidden", exec_line
    menu.wait_label("Start at login", lambda item: item.checked is True)
    menu.click("Start at login")
    wait_for("the autostart entry removed", lambda: not entry.exists())

    quit_from_tray(desktop, app)
    assert token not in app.logs()


def test_an_upgrade_keeps_providers_adapters_keys_and_settings(
    desktop: DesktopSession, base_installed: Installed, mock_upstream, tmp_path: Path
) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = start_installed(desktop, base_installed, "--hidden", "--port", str(port))
    app.wait_health(base_url)
    token = management_token(desktop)
    key = set_up_routing(base_url, token, mock_upstream.base_url)
    assert chat(base_url, key)
    usage_rows(base_url, token, 1)
    # A setting: the port to listen on from the next start (no --port then).
    saved_port = free_port()
    status, body = api(base_url, token, "PUT", "/api/settings", {"listen": {"port": saved_port}})
    assert status == 200, body
    quit_from_tray(desktop, app)

    newer = newer_package(base_installed.deb, tmp_path)
    apt_install(newer)
    assert dpkg_version() == f"{base_installed.version}+1"

    base_url = f"http://127.0.0.1:{saved_port}"
    again = start_installed(desktop, base_installed, "--hidden", log_name="upgraded.log")
    again.wait_health(base_url)
    assert management_token(desktop) == token  # the same keychain entry, not a new one
    status, providers = api(base_url, token, "GET", "/api/providers")
    assert status == 200 and "mock" in json.dumps(providers), providers
    status, adapters = api(base_url, token, "GET", "/api/adapters")
    assert status == 200 and len(adapters) == 1, adapters  # type: ignore[arg-type]
    status, settings = api(base_url, token, "GET", "/api/settings")
    assert settings["listen"]["saved_port"] == saved_port, settings  # type: ignore[index]
    # The provider's key is read back from the keychain: a request still goes through.
    assert chat(base_url, key)
    assert len(usage_rows(base_url, token, 2)) == 2
    quit_from_tray(desktop, again)


def newer_package(deb: Path, tmp_path: Path) -> Path:
    """The built package with `Version: <v>+1`: what the next release's .deb looks like to dpkg."""
    tree = tmp_path / "newer"
    run("dpkg-deb", "-R", str(deb), str(tree))
    control_file = tree / "DEBIAN" / "control"
    text = control_file.read_text()
    text, count = re.subn(r"^Version: (.+)$", r"Version: \1+1", text, flags=re.MULTILINE)
    assert count == 1, text
    control_file.write_text(text)
    fields = control(deb)
    out = tmp_path / f"{fields['Package']}_{fields['Version']}+1_{fields['Architecture']}.deb"
    run("dpkg-deb", "--root-owner-group", "-b", str(tree), str(out))
    return out


# --- migrations -----------------------------------------------------------------------------------


def older_schema(db_path: Path) -> int:
    """Writes a database as the release before the newest migration left it, with one provider and a
    setting in it; returns its schema version (the current one minus one)."""
    source = (REPO / "src-tauri/gateway/src/store/sqlite/schema.rs").read_text()
    block = source.split("const MIGRATIONS: &[&str] = &[", 1)[1].split("\n];", 1)[0]
    migrations = re.findall(r'^\s*"((?:[^"\\]|\\.)*)",\s*$', block, re.MULTILINE | re.DOTALL)
    assert len(migrations) >= 2, "could not read the migrations from store/sqlite/schema.rs"
    old = len(migrations) - 1
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(db_path) as conn:
        for sql in migrations[:old]:
            conn.executescript(sql)
        conn.execute(
            "INSERT INTO providers (id, url, protocol, created_at, updated_at) "
            # A protocol name a release really wrote: `openai` never was one, and an unreadable
            # stored value is now refused by name rather than served as a guess.
            "VALUES ('seeded', 'http://127.0.0.1:9/v1', 'openai_chat', 0, 0)"
        )
        conn.execute(f"PRAGMA user_version = {old}")
    conn.close()
    return old


def schema_version(db_path: Path) -> int:
    with sqlite3.connect(db_path) as conn:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    return found


def start_on_old_database(desktop: DesktopSession, installed: Installed) -> tuple[Path, int, App, str]:
    data_dir = Path(desktop.env["XDG_DATA_HOME"]) / "flexiproxy"
    db_path = data_dir / "flexiproxy.db"
    old = older_schema(db_path)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = start_installed(desktop, installed, "--hidden", "--port", str(port))
    app.wait_health(base_url)
    return data_dir, old, app, base_url


def test_an_old_database_is_migrated_and_keeps_its_data(desktop: DesktopSession, present: Installed) -> None:
    data_dir, old, app, base_url = start_on_old_database(desktop, present)
    token = management_token(desktop)
    status, providers = api(base_url, token, "GET", "/api/providers")
    assert status == 200 and "seeded" in json.dumps(providers), providers
    quit_from_tray(desktop, app)
    assert schema_version(data_dir / "flexiproxy.db") == old + 1


def test_a_migration_backs_up_the_database_once(desktop: DesktopSession, present: Installed) -> None:
    installed = present
    data_dir, old, app, base_url = start_on_old_database(desktop, installed)
    quit_from_tray(desktop, app)
    new = schema_version(data_dir / "flexiproxy.db")
    assert new == old + 1
    backups = sorted((data_dir / "backups").glob("*.db")) if (data_dir / "backups").is_dir() else []
    assert len(backups) == 1, backups
    assert re.fullmatch(rf"flexiproxy-v{old}-\d{{8}}T\d{{6}}Z\.db", backups[0].name), backups[0].name
    assert schema_version(backups[0]) == old
    with sqlite3.connect(backups[0]) as conn:
        assert conn.execute("SELECT id FROM providers").fetchall() == [("seeded",)]
    conn.close()
    expected = f"backed up the database to {backups[0]} before upgrading it from schema v{old} to v{new}"
    assert expected in app.logs(), app.logs()

    # Already at the current schema: the next start takes no second backup.
    port = free_port()
    again = start_installed(desktop, installed, "--hidden", "--port", str(port), log_name="again.log")
    again.wait_health(f"http://127.0.0.1:{port}")
    quit_from_tray(desktop, again)
    assert sorted((data_dir / "backups").glob("*.db")) == backups


# --- removal ----------------------------------------------------------------------------------------


def test_removing_the_package_keeps_the_users_data_and_keys(desktop: DesktopSession, base_installed: Installed) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = start_installed(desktop, base_installed, "--hidden", "--port", str(port))
    app.wait_health(base_url)
    token = management_token(desktop)
    quit_from_tray(desktop, app)
    data_dir = Path(desktop.env["XDG_DATA_HOME"]) / "flexiproxy"
    data = sorted(p.name for p in data_dir.iterdir())
    assert data, "the app wrote nothing to its data folder"

    for how in ("--remove", "--purge"):
        apt_install(base_installed.deb)
        run("dpkg", how, PACKAGE, env=APT_ENV)
        assert dpkg_version() is None
        assert not INSTALLED_BIN.exists(), how
        assert not (Path("/") / DESKTOP_ENTRY).exists(), how
        # User data lives in the home folder, which packages never touch.
        assert sorted(p.name for p in data_dir.iterdir()) == data, how
        assert management_token(desktop) == token, how
