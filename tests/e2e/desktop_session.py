"""A private desktop session for the tests of the real app: a virtual X display, a D-Bus session bus and
an unlocked gnome-keyring, plus the app's tray menu (dbusmenu), its window (xwininfo) and screenshots.

Used by ``test_desktop.py`` (the app built from source) and by the tests of the installed package, which
launch another binary through ``DesktopSession.launch(program=...)``. See ``test_desktop.py`` for what the
tests do with it."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from browser import ARTIFACTS

REPO = Path(__file__).resolve().parents[2]
# Where the autostart plugin writes the login entry (XDG autostart), under the test's HOME.
AUTOSTART_ENTRY = Path(".config") / "autostart" / "FlexiProxy.desktop"
KEYRING_PASSWORD = "flexiproxy-e2e"
WINDOW_TITLE = "FlexiProxy"
START_TIMEOUT_S = 30.0
# The dashboard shows well over this many colours (1600+ at 1100x760); the app's local pages
# (stopped, not running) about 550-650.
DASHBOARD_COLOURS = 1200
# Debian package for each tool the tests drive, for the failure message.
TOOLS = {
    "dbus-daemon": "dbus",
    "gnome-keyring-daemon": "gnome-keyring",
    "secret-tool": "libsecret-tools",
    "xwininfo": "x11-utils",
    "import": "imagemagick",
    "convert": "imagemagick",
    "gdbus": "libglib2.0-bin",
    "xdotool": "xdotool",
}

def binary() -> Path:
    return Path(os.environ.get("FLEXIPROXY_BIN") or REPO / "target" / "debug" / "flexiproxy")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminates one process we started (by its own handle), killing it if it does not go."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def http_get(url: str, token: str | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@dataclass
class Window:
    id: str
    x: int
    y: int
    width: int
    height: int
    viewable: bool


@dataclass
class DesktopSession:
    """A private X display, D-Bus session and unlocked keyring, plus the apps started in it."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    display: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)

    def run(
        self, *command: str, timeout: float = 15.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(command), env=self.env, capture_output=True, text=True, timeout=timeout, check=check
        )

    # --- the app -------------------------------------------------------------------------------

    def launch(self, *args: str, log_name: str = "app.log", program: Path | None = None) -> App:
        """Starts the app (`program`, default the binary under test) in this session."""
        log_path = self.root / log_name
        log = log_path.open("wb")
        proc = subprocess.Popen(
            [str(program or binary()), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.processes.append(proc)
        return App(proc=proc, log_path=log_path)

    # --- windows and screenshots ---------------------------------------------------------------

    def window_tree(self) -> str:
        """`xwininfo -root -tree`. A window that goes away while xwininfo walks the tree (a
        toolkit's short-lived helper, a dialog closing) makes it fail with BadWindow; that is
        a moment, not an answer, so it is asked again."""
        for _ in range(20):
            tree = self.run("xwininfo", "-root", "-tree", check=False)
            if tree.returncode == 0:
                return tree.stdout
            time.sleep(0.05)
        return self.run("xwininfo", "-root", "-tree").stdout

    def find_window(self, title: str = WINDOW_TITLE) -> Window | None:
        """The top-level window with this exact title (the biggest, if toolkits add helpers)."""
        tree = self.window_tree()
        ids = re.findall(r"^\s+(0x[0-9a-f]+) \"" + re.escape(title) + r"\"", tree, re.MULTILINE)
        found: list[Window] = []
        for wid in ids:
            info = self.run("xwininfo", "-id", wid, check=False).stdout
            values = dict(
                (key.strip(), value.strip())
                for key, value in (line.split(":", 1) for line in info.splitlines() if ":" in line)
            )
            try:
                found.append(
                    Window(
                        id=wid,
                        x=int(values["Absolute upper-left X"]),
                        y=int(values["Absolute upper-left Y"]),
                        width=int(values["Width"]),
                        height=int(values["Height"]),
                        viewable=values.get("Map State") == "IsViewable",
                    )
                )
            except (KeyError, ValueError):
                continue
        return max(found, key=lambda w: w.width * w.height, default=None)

    def wait_window(self, viewable: bool, timeout: float = START_TIMEOUT_S) -> Window:
        deadline = time.monotonic() + timeout
        window = None
        while time.monotonic() < deadline:
            window = self.find_window()
            if window is not None and window.viewable == viewable:
                return window
            time.sleep(0.25)
        state = "visible" if viewable else "hidden"
        raise AssertionError(f"no {state} {WINDOW_TITLE!r} window; last seen: {window}")

    def screenshot(self, name: str) -> Path:
        path = self.root / name
        self.run("import", "-window", "root", str(path))
        return path

    def image_stats(self, path: Path, window: Window) -> tuple[float, int]:
        """Standard deviation (0..1) and number of distinct colours inside the window's rectangle."""
        crop = f"{window.width}x{window.height}+{window.x}+{window.y}"
        stats = "%[fx:standard_deviation] %k"
        out = self.run("convert", str(path), "-crop", crop, "+repage", "-format", stats, "info:").stdout
        deviation, colours = out.split()
        return float(deviation), int(colours)

    # --- the keychain ---------------------------------------------------------------------------

    def keychain_items(self) -> list[dict[str, str]]:
        """Attributes of every item the `keyring` crate wrote (it tags each with this application)."""
        # secret-tool prints each item's header and secret to stdout and its attributes to stderr:
        # one unbuffered stream keeps every attribute under its own item.
        out = subprocess.run(
            ["stdbuf", "-o0", "-e0", "secret-tool", "search", "--all", "application", "rust-keyring"],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=15, check=False,
        )
        text = out.stdout
        items: list[dict[str, str]] = []
        for block in re.split(r"^\[", text, flags=re.MULTILINE):
            attrs = dict(re.findall(r"^attribute\.(\S+) = (.*)$", block, re.MULTILINE))
            if attrs:
                items.append(attrs)
        return items

    # --- the tray menu --------------------------------------------------------------------------

    def tray_menu(self, pid: int, timeout: float = 15.0) -> TrayMenu:
        """The app's tray menu, as exported on D-Bus by libayatana-appindicator (dbusmenu).

        With no tray host to draw it (none runs under Xvfb), the indicator still exports its menu,
        which is what a desktop's tray host would read and click; the tests do the same."""
        root = "/org/ayatana/NotificationItem"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name in self._connections_of(pid):
                try:
                    xml = self.gdbus_call(
                        name, root, "org.freedesktop.DBus.Introspectable.Introspect", check=False, timeout=1
                    )
                except subprocess.TimeoutExpired:
                    # Some of the app's connections never answer (the keychain client's, it seems),
                    # and gdbus does not keep to its own --timeout there.
                    continue
                child = re.search(r'<node name="([^"]+)"', xml)
                if child:
                    return TrayMenu(self, name, f"{root}/{child.group(1)}/Menu")
            time.sleep(0.25)
        raise AssertionError(f"no tray menu exported by pid {pid}")

    def _connections_of(self, pid: int) -> list[str]:
        bus = ("org.freedesktop.DBus", "/org/freedesktop/DBus")
        names = self.gdbus_call(*bus, "org.freedesktop.DBus.ListNames")
        owned = []
        for name in re.findall(r"'(:[0-9.]+)'", names):
            out = self.gdbus_call(*bus, "org.freedesktop.DBus.GetConnectionUnixProcessID", name, check=False)
            if re.search(rf"\buint32 {pid}\b", out):
                owned.append(name)
        return owned

    def gdbus_call(
        self, dest: str, path: str, method: str, *args: str, check: bool = True, timeout: float = 10
    ) -> str:
        return self.run(
            "gdbus", "call", "--session", "--dest", dest, "--object-path", path,
            # "--" so that arguments such as -1 are not taken for options.
            "--method", method, "--", *args, check=check, timeout=timeout,
        ).stdout


@dataclass
class MenuItem:
    id: int
    label: str
    enabled: bool
    # A check item's state (None for plain items).
    checked: bool | None = None


@dataclass
class TrayMenu:
    session: DesktopSession
    dest: str
    path: str

    def items(self) -> list[MenuItem]:
        # GetLayout(parent 0 = root, depth -1 = all, every property).
        layout = self.session.gdbus_call(
            self.dest, self.path, "com.canonical.dbusmenu.GetLayout", "0", "-1", "[]"
        )
        items = []
        for item_id, props in re.findall(r"\((\d+), \{([^{}]*)\}", layout):
            label = re.search(r"'label': <'((?:[^'\\]|\\.)*)'>", props)
            if label is None:
                continue  # the root and separators have no label
            toggle = re.search(r"'toggle-state': <(-?\d+)>", props)
            checked = None if toggle is None else toggle.group(1) == "1"
            items.append(MenuItem(int(item_id), label.group(1), "'enabled': <false>" not in props, checked))
        return items

    def item(self, prefix: str) -> MenuItem:
        found = next((item for item in self.items() if item.label.startswith(prefix)), None)
        assert found is not None, f"no item starting with {prefix!r} in the tray menu: {self.labels()}"
        return found

    def wait_label(self, prefix: str, predicate, timeout: float = 15.0) -> MenuItem:
        """Waits (bounded) until the item whose label starts with `prefix` satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        while True:
            item = self.item(prefix)
            if predicate(item):
                return item
            if time.monotonic() > deadline:
                raise AssertionError(f"tray item {prefix!r} stayed {item} for {timeout}s: {self.labels()}")
            time.sleep(0.1)

    def status_line(self) -> str:
        return self.items()[0].label

    def labels(self) -> list[str]:
        return [item.label for item in self.items()]

    def click(self, label: str) -> None:
        item = next((item for item in self.items() if item.label == label), None)
        assert item is not None, f"no {label!r} in the tray menu: {self.labels()}"
        # Event(id, "clicked", data, timestamp): what a tray host sends when the user picks an item.
        self.session.gdbus_call(
            self.dest, self.path, "com.canonical.dbusmenu.Event", str(item.id), "clicked", "<int32 0>", "0"
        )


@dataclass
class App:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        """The app's log without colour codes (tracing colours its output even into a file)."""
        return re.sub(r"\x1b\[[0-9;]*m", "", self.log_path.read_text(errors="replace"))

    def wait_health(self, base_url: str, timeout: float = START_TIMEOUT_S) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"flexiproxy exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                status, body = http_get(f"{base_url}/health", timeout=2)
                if status == 200:
                    return json.loads(body)
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"no /health answer from {base_url} within {timeout}s:\n{self.logs()}")


def management_token(session: DesktopSession) -> str:
    """The management token the app created in the (real, private) keychain."""
    items = [item for item in session.keychain_items() if item.get("username") == "management-token"]
    assert len(items) == 1, session.keychain_items()
    lookup = session.run("secret-tool", "lookup", "service", items[0]["service"], "username", "management-token")
    token = lookup.stdout.strip()
    assert token.startswith("fpm-"), "no management token in the keychain"
    return token


def api(base_url: str, token: str, method: str, path: str, body: object = None) -> tuple[int, object]:
    """One management-API call; the status and the parsed JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base_url}{path}", data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def health_refused(base_url: str) -> bool:
    try:
        http_get(f"{base_url}/health", timeout=2)
    except OSError:
        return True
    return False


def wait_for(what: str, predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.1)


def tray_look(session: DesktopSession, menu: TrayMenu) -> str:
    """Which tray icon the app shows ("running", "stopped" or "error"), from the PNG file that its
    StatusNotifierItem names (`IconName`), as a tray host would draw it.

    Two pixels tell the icons apart (see icons/generate.py): the background near the bottom-left
    corner is blue in the running and error icons and grey in the stopped one; the bottom-right
    corner carries the red error badge."""
    item = menu.path.rsplit("/Menu", 1)[0]
    props = session.gdbus_call(
        menu.dest, item, "org.freedesktop.DBus.Properties.Get", "org.kde.StatusNotifierItem", "IconName"
    )
    found = re.search(r"'([^']+)'", props)
    assert found, props
    path = found.group(1) if found.group(1).endswith(".png") else found.group(1) + ".png"
    out = session.run("convert", path, "-format", "%[pixel:p{12,52}] %[pixel:p{56,56}]", "info:").stdout

    def rgb(text: str) -> tuple[float, ...]:
        numbers = [float(n) for n in re.findall(r"[\d.]+", text)[:3]]
        # ImageMagick prints 0..255 or percentages depending on the version.
        return tuple(n * 2.55 if "%" in text else n for n in numbers)

    corner, badge = (rgb(part) for part in out.split(" ", 1))
    if badge[0] > 150 and badge[1] < 90 and badge[2] < 90:
        return "error"
    if corner[2] - corner[0] > 60:
        return "running"
    if max(corner) - min(corner) < 25:
        return "stopped"
    raise AssertionError(f"unknown tray icon {path}: {out}")


def close_window(session: DesktopSession, window: Window) -> None:
    """Asks the window to close as a window manager does when the user clicks its close button:
    a WM_DELETE_WINDOW client message (Xlib through ctypes; no window manager runs under Xvfb)."""
    import ctypes
    import ctypes.util

    class ClientMessage(ctypes.Structure):
        _fields_ = [
            ("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
            ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
            ("format", ctypes.c_int), ("data", ctypes.c_long * 5),
        ]

    class Event(ctypes.Union):
        _fields_ = [("client", ClientMessage), ("pad", ctypes.c_long * 24)]

    library = ctypes.util.find_library("X11")
    assert library, "libX11 is needed to close the window (apt libx11-6)"
    x11 = ctypes.CDLL(library)
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.POINTER(Event)]
    x11.XFlush.argtypes = [ctypes.c_void_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    display = x11.XOpenDisplay(session.display.encode())
    assert display, f"cannot open display {session.display}"
    try:
        event = Event()
        event.client.type = 33  # ClientMessage
        event.client.window = int(window.id, 16)
        event.client.message_type = x11.XInternAtom(display, b"WM_PROTOCOLS", 0)
        event.client.format = 32
        event.client.data[0] = x11.XInternAtom(display, b"WM_DELETE_WINDOW", 0)
        event.client.data[1] = 0  # CurrentTime
        assert x11.XSendEvent(display, event.client.window, 0, 0, ctypes.byref(event)), "XSendEvent failed"
        x11.XFlush(display)
    finally:
        x11.XCloseDisplay(display)


def require_binary() -> None:
    if not binary().is_file():
        pytest.fail(f"{binary()} does not exist; run `cargo build -p flexiproxy` or set FLEXIPROXY_BIN")


def require_tools() -> None:
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    missing = [f"{tool} (apt {package})" for tool, package in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        pytest.fail("the desktop tests need: " + ", ".join(missing))
    require_binary()


def log_file(session: DesktopSession, name: str) -> int:
    """A log file for a helper process; the child keeps its own descriptor, ours is closed at once."""
    fd = os.open(session.root / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    session.fds.append(fd)
    return fd


def start_xvfb(session: DesktopSession) -> str:
    """Starts Xvfb on the first free display (it writes the number it took to a pipe); returns `:N`."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log_file(session, "xvfb.log"),
    )
    os.close(write_fd)
    session.processes.append(proc)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number.isdigit():
        raise AssertionError(f"Xvfb did not start: {(session.root / 'xvfb.log').read_text()}")
    return f":{number}"


def start_dbus(session: DesktopSession, config: Path | None = None) -> str:
    """A session bus (the standard one, or the one `config` describes); returns its address."""
    bus = f"--config-file={config}" if config else "--session"
    proc = subprocess.Popen(
        ["dbus-daemon", bus, "--nofork", "--nosyslog", "--print-address=1"],
        env=session.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    session.processes.append(proc)
    assert proc.stdout is not None
    address = proc.stdout.readline().decode().strip()
    if not address:
        raise AssertionError("dbus-daemon did not print its address")
    return address


def start_keyring(session: DesktopSession) -> None:
    """gnome-keyring in the foreground (so we own its pid), unlocked with a password on stdin.

    On an empty HOME this creates the login keyring, which becomes the default collection the
    app's keychain writes to. `secret-tool` answering proves it is ready."""
    proc = subprocess.Popen(
        ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
        env=session.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=log_file(session, "keyring.log"),
    )
    session.processes.append(proc)
    assert proc.stdin is not None
    proc.stdin.write(KEYRING_PASSWORD.encode())
    proc.stdin.close()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        owner = session.gdbus_call(
            "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner",
            "org.freedesktop.secrets", check=False,
        )
        if "true" in owner:
            probe = session.run("secret-tool", "search", "flexiproxy-e2e-probe", "none", check=False)
            if probe.returncode in (0, 1):
                return
        time.sleep(0.2)
    raise AssertionError(f"gnome-keyring did not come up: {(session.root / 'keyring.log').read_text()}")


def scratch_session(tmp_path: Path) -> DesktopSession:
    """A session whose HOME, XDG folders and runtime folder are all under `tmp_path`."""
    require_tools()
    session = DesktopSession(root=tmp_path)
    home = tmp_path / "home"
    runtime = tmp_path / "runtime"
    for folder in (home / ".local" / "share", home / ".config", home / ".cache", runtime):
        folder.mkdir(parents=True)
    runtime.chmod(0o700)
    env = {
        key: value
        for key, value in os.environ.items()
        # Nothing from the caller's session may leak in: display, bus, keyring, gateway settings.
        if not key.startswith(("FLEXIPROXY_", "XDG_", "DBUS_", "GNOME_KEYRING", "WAYLAND_", "DISPLAY"))
    }
    env.update(
        HOME=str(home),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_RUNTIME_DIR=str(runtime),
        FLEXIPROXY_LOG="info",
    )
    session.env = env
    return session


def end_session(session: DesktopSession) -> None:
    """Apps first, then keyring, bus and display: the reverse order of their start."""
    for proc in reversed(session.processes):
        stop_process(proc)
    for fd in session.fds:
        os.close(fd)


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[DesktopSession]:
    session = scratch_session(tmp_path)
    try:
        session.display = session.env["DISPLAY"] = start_xvfb(session)
        session.env["DBUS_SESSION_BUS_ADDRESS"] = start_dbus(session)
        start_keyring(session)
        yield session
    finally:
        end_session(session)


def _keep_screenshot(path: Path) -> Path:
    """Copies a screenshot to the artifacts folder (and FLEXIPROXY_SCREENSHOT_DIR if set)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    kept = ARTIFACTS / path.name
    shutil.copyfile(path, kept)
    target_dir = os.environ.get("FLEXIPROXY_SCREENSHOT_DIR")
    if target_dir:
        Path(target_dir).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target_dir) / path.name)
    return kept


def wait_painted(session: DesktopSession, window: Window, name: str, colours_at_least: int) -> Path:
    """Screenshots until the window shows a painted page (at least `colours_at_least` colours:
    the dashboard has well over 1000, the app's local pages a few hundred) that stays the same
    for a second (loaded: the page's first API calls answered; Xvfb can also lag a frame
    behind), and keeps that picture."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last = ""
    while True:
        shot = session.screenshot(name)
        deviation, colours = session.image_stats(shot, window)
        crop = f"{window.width}x{window.height}+{window.x}+{window.y}"
        signature = session.run("convert", str(shot), "-crop", crop, "+repage", "-format", "%#", "info:").stdout
        if colours >= colours_at_least and signature == last:
            break
        if time.monotonic() > deadline:
            break
        last = signature
        time.sleep(1.0)
    kept = _keep_screenshot(shot)
    print(f"screenshot: {kept} ({window.width}x{window.height}, sd={deviation:.3f}, colours={colours})")
    assert colours >= colours_at_least, f"blank window? sd={deviation}, colours={colours}: {kept}"
    return kept


# --- native dialogs, keys, a session without a keychain, login entries ------------------------

def viewable_windows(session: DesktopSession, title: str) -> list[str]:
    """The ids of the mapped top-level windows with exactly this title (native dialogs included)."""
    tree = session.window_tree()
    ids = re.findall(r"^\s+(0x[0-9a-f]+) \"" + re.escape(title) + r"\"", tree, re.MULTILINE)
    return [
        wid for wid in ids
        if "Map State: IsViewable" in session.run("xwininfo", "-id", wid, check=False).stdout
    ]


def wait_dialog(session: DesktopSession, title: str, timeout: float = START_TIMEOUT_S) -> Window:
    """Waits for a mapped window with this exact title (a native dialog) and returns it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        window = session.find_window(title)
        if window is not None and window.viewable:
            return window
        time.sleep(0.25)
    raise AssertionError(f"no {title!r} window within {timeout}s")


def press_key(session: DesktopSession, window: Window, key: str) -> None:
    """Gives `window` the keyboard focus and presses `key` there, as a user would (XTEST events:
    no window manager runs under Xvfb, so xdotool sets the focus itself)."""
    session.run("xdotool", "windowfocus", "--sync", window.id, timeout=10)
    session.run("xdotool", "key", "--clearmodifiers", key, timeout=10)


def desktop_exec_args(value: str) -> list[str]:
    """The argument vector of a desktop entry's `Exec` value, read as the Desktop Entry spec says:
    first the string escapes of every value (`\\s`, `\\n`, `\\t`, `\\r`, `\\\\`), then the quoting
    rules (double quotes, inside them `\\"`, `\\``, `\\$` and `\\\\` escaped), then `%%` is a `%`
    and other field codes are left out."""
    unescaped = re.sub(
        r"\\(.)", lambda m: {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}.get(m.group(1), m.group(0)), value
    )
    args: list[str] = []
    current: str | None = None
    i = 0
    while i < len(unescaped):
        c = unescaped[i]
        if c == '"':
            current = current or ""
            i += 1
            while i < len(unescaped) and unescaped[i] != '"':
                if unescaped[i] == "\\" and i + 1 < len(unescaped) and unescaped[i + 1] in '"`$\\':
                    i += 1
                current += unescaped[i]
                i += 1
            assert i < len(unescaped), f"unterminated quote in Exec={value}"
        elif c == " ":
            if current is not None:
                args.append(current)
            current = None
        else:
            current = (current or "") + c
        i += 1
    if current is not None:
        args.append(current)
    out = []
    for arg in args:
        if re.fullmatch(r"%[fFuUdDnNickvm]", arg):
            continue
        out.append(arg.replace("%%", "%"))
    return out


# A session bus that starts nothing by itself: the default session configuration would
# D-Bus-activate gnome-keyring (org.freedesktop.secrets) on the first call, which is what a test
# without a keychain must not have.
BUS_WITHOUT_ACTIVATION = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={runtime}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@pytest.fixture
def desktop_without_keychain(tmp_path: Path) -> Iterator[DesktopSession]:
    """Like `desktop`, but no Secret Service on the bus (and none that the bus could start)."""
    session = scratch_session(tmp_path)
    config = tmp_path / "bus.conf"
    config.write_text(BUS_WITHOUT_ACTIVATION.format(runtime=session.env["XDG_RUNTIME_DIR"]))
    try:
        session.display = session.env["DISPLAY"] = start_xvfb(session)
        session.env["DBUS_SESSION_BUS_ADDRESS"] = start_dbus(session, config)
        owner = session.gdbus_call(
            "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner",
            "org.freedesktop.secrets",
        )
        assert "false" in owner, owner
        yield session
    finally:
        end_session(session)


def start_locked_keyring(session: DesktopSession) -> subprocess.Popen[bytes]:
    """gnome-keyring in the foreground WITHOUT unlocking: a login keyring made earlier (by
    `start_keyring` in the same HOME) stays locked. On a bus that starts nothing (see
    `desktop_without_keychain`) it has no prompter to ask for the password, so reading a locked
    item fails at once ("prompt dismissed") instead of waiting for someone to type it."""
    proc = subprocess.Popen(
        ["gnome-keyring-daemon", "--foreground", "--components=secrets"],
        env=session.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log_file(session, "keyring-locked.log"),
    )
    session.processes.append(proc)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        owner = session.gdbus_call(
            "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner",
            "org.freedesktop.secrets", check=False,
        )
        if "true" in owner:
            return proc
        time.sleep(0.2)
    raise AssertionError(f"gnome-keyring did not come up: {(session.root / 'keyring-locked.log').read_text()}")


def usage_rows(base_url: str, token: str, at_least: int) -> list[dict[str, object]]:
    """The recent usage rows, once there are at least `at_least` of them."""
    rows: list[dict[str, object]] = []

    def recorded() -> bool:
        nonlocal rows
        status, body = api(base_url, token, "GET", "/api/usage/recent?limit=200")
        assert status == 200, body
        rows = body  # type: ignore[assignment]
        return len(rows) >= at_least

    wait_for(f"{at_least} usage rows", recorded)
    return rows
