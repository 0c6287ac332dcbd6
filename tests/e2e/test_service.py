"""FlexiProxy as a systemd service, and upgrades of an existing install (issue 7).

The unit files shipped in ``src-tauri/app/linux/`` are parsed, checked with
``systemd-analyze verify``, and their ``ExecStart`` is run as systemd would run it: the unit's
``Environment=`` and ``EnvironmentFile=`` (holding a provider key, the adapter key and the
management token), its umask, stderr going to a file that ``JOURNAL_STREAM`` names. The paths
the unit names (``/usr/bin/flexiproxy``, ``/etc/flexiproxy``, ``/var/lib/flexiproxy``, ``%h``)
are swapped for the built binary and scratch folders; nothing else is changed. The gateway must
answer, relay a request through the config file's adapter to a loopback upstream with the key
from the environment, stop on SIGTERM, and log in the journal's format (``<6>`` priorities, no
colours, no timestamps).

The upgrade tests start the binary on a data folder holding a schema-3 database
(``tests/fixtures/store/v3.sql``): its data must survive, one backup must be made before the
migration, and none on the next start.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import signal
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from conftest import (
    REPO,
    FaultUpstreams,
    GatewayFactory,
    ManagementClient,
    gateway_binary,
    scratch_env,
    wait_listening,
)
from fault_upstream import answer_text

UNITS = REPO / "src-tauri" / "app" / "linux"
SYSTEM_UNIT = UNITS / "flexiproxy.service"
USER_UNIT = UNITS / "flexiproxy-user.service"
V3_FIXTURE = REPO / "tests" / "fixtures" / "store" / "v3.sql"
# The adapter the v3 fixture holds, and the variable its provider's key is read from.
LEGACY_ADAPTER_KEY = "fp-legacy-adapter-" + "0" * 40
LEGACY_KEY_VAR = "FP_LEGACY_KEY"
BACKUP_NAME = re.compile(r"flexiproxy-v3-\d{8}T\d{6}Z\.db")
# What `systemctl stop` waits before SIGKILL in the units (TimeoutStopSec).
STOP_TIMEOUT_S = 20.0


def need_tool(name: str, package: str) -> str:
    """The tool's path; a missing tool skips the test, or fails it under CI naming the package."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package {package})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


# -- unit files ----------------------------------------------------------------------------------


@dataclass
class Unit:
    path: Path
    entries: list[tuple[str, str, str]]  # (section, key, value) in file order

    def values(self, section: str, key: str) -> list[str]:
        return [v for s, k, v in self.entries if s == section and k == key]

    def value(self, section: str, key: str) -> str:
        found = self.values(section, key)
        assert len(found) == 1, f"{self.path.name}: expected one {key}= in [{section}], got {found}"
        return found[0]


def parse_unit(path: Path) -> Unit:
    """A unit file as systemd reads it: sections, `Key=value` lines (repeats kept in order),
    `#`/`;` comments, and lines continued with a trailing backslash."""
    entries: list[tuple[str, str, str]] = []
    section = ""
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a Key=value line: {line!r}"
        assert section, f"{path.name}: {key}= outside a section"
        entries.append((section, key.strip(), value.strip()))
    return Unit(path, entries)


def test_the_system_unit_runs_headless_with_secrets_from_the_environment() -> None:
    unit = parse_unit(SYSTEM_UNIT)
    argv = shlex.split(unit.value("Service", "ExecStart"))
    assert argv[0] == "/usr/bin/flexiproxy" and "--headless" in argv, argv
    # A system service has no login keyring: keys must come from the environment.
    assert argv[argv.index("--secrets") + 1] == "env", argv
    state = unit.value("Service", "StateDirectory")
    assert argv[argv.index("--data-dir") + 1] == f"/var/lib/{state}", argv
    assert unit.value("Service", "DynamicUser") == "yes"
    assert unit.value("Service", "Restart") == "on-failure"
    assert unit.value("Service", "EnvironmentFile").startswith("-"), "a missing env file is not an error"
    assert unit.value("Install", "WantedBy") == "multi-user.target"


def test_the_user_unit_uses_the_keychain_and_the_home_folder() -> None:
    unit = parse_unit(USER_UNIT)
    argv = shlex.split(unit.value("Service", "ExecStart"))
    assert argv[0] == "/usr/bin/flexiproxy" and "--headless" in argv, argv
    assert argv[argv.index("--secrets") + 1] == "auto", argv
    assert argv[argv.index("--config") + 1] == "%h/.config/flexiproxy/config.toml", argv
    assert "--data-dir" not in argv, "the user unit shares the desktop app's data folder"
    assert unit.value("Service", "Restart") == "on-failure"
    assert unit.value("Install", "WantedBy") == "default.target"


@pytest.mark.parametrize("unit_path", [SYSTEM_UNIT, USER_UNIT], ids=["system", "user"])
def test_the_unit_verifies(unit_path: Path, tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit without a warning. It also checks that the
    program exists, so the copy it reads names the built binary instead of /usr/bin/flexiproxy;
    the file is otherwise byte for byte the one shipped (and keeps its name)."""
    tool = need_tool("systemd-analyze", "systemd")
    copy = tmp_path / unit_path.name
    copy.write_text(unit_path.read_text().replace("/usr/bin/flexiproxy", str(gateway_binary())))
    home = tmp_path / "home"
    runtime = tmp_path / "runtime"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    cmd = [tool, *(["--user"] if unit_path == USER_UNIT else []), "verify", str(copy)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, f"{cmd}: exit {done.returncode}\n{output}"
    assert output == "", f"systemd-analyze verify warned about {unit_path.name}:\n{output}"


# -- running a unit's ExecStart ------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines as EnvironmentFile= reads them (comments and blank lines skipped, one
    level of quotes removed); enough for the files these tests write."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = shlex.split(value)[0] if value.strip() else ""
    return out


def service_config(upstream_url: str, key_var: str, adapter_var: str) -> str:
    return f"""# the config file of the service tests
[[providers]]
id = "up"
url = "{upstream_url}"
discovery = "off"
models = ["svc-model"]
  [[providers.credentials]]
  key = "env:{key_var}"

[[adapters]]
name = "svc"
key = "env:{adapter_var}"
provider = "up"
model = "svc-model"
"""


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_unit(unit: Unit, tmp_path: Path, env_vars: dict[str, str], config: str) -> Service:
    """Runs the unit's ExecStart the way systemd would, with the unit's paths moved under
    `tmp_path`; `env_vars` go into the unit's EnvironmentFile (mode 0600), `config` into the
    file its --config names."""
    root = tmp_path / "root"
    home = tmp_path / "home"
    home.mkdir(parents=True)

    def local(path: str) -> str:
        if path == "/usr/bin/flexiproxy":
            return str(gateway_binary())
        path = path.replace("%h", str(home))
        if path.startswith("/") and not path.startswith(str(tmp_path)):
            return str(root / path.lstrip("/"))
        return path

    argv = [local(arg) for arg in shlex.split(unit.value("Service", "ExecStart"))]
    config_path = Path(argv[argv.index("--config") + 1])
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(config)
    for state in unit.values("Service", "StateDirectory"):
        # systemd makes it (mode StateDirectoryMode, 0755 unless given) before starting.
        mode = int(unit.values("Service", "StateDirectoryMode")[0], 8) if unit.values("Service", "StateDirectoryMode") else 0o755
        (root / "var/lib" / state).mkdir(parents=True, mode=mode)

    # A service's environment: what the manager passes, then Environment=, then the env files.
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    if unit.path == USER_UNIT:
        # The user manager passes on the session bus, where the keychain lives.
        for name in ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR"):
            if name in os.environ:
                env[name] = os.environ[name]
    for assignments in unit.values("Service", "Environment"):
        for assignment in shlex.split(assignments):
            key, _, value = assignment.partition("=")
            env[key] = value
    env_files = unit.values("Service", "EnvironmentFile")
    assert env_files, f"{unit.path.name} reads no EnvironmentFile"
    env_file = Path(local(env_files[0].lstrip("-")))
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env_vars.items()))
    env_file.chmod(0o600)
    for name in env_files:
        path = Path(local(name.lstrip("-")))
        if path.exists() or not name.startswith("-"):
            env.update(read_env_file(path))

    umask = unit.values("Service", "UMask")
    return launch(argv, env, tmp_path / "journal.log", journal=True, umask=int(umask[0], 8) if umask else -1)


def launch(argv: list[str], env: dict[str, str], log_path: Path, *, journal: bool = False, umask: int = -1) -> Service:
    """Starts the gateway with stderr to `log_path` (named by JOURNAL_STREAM when `journal`) and
    waits for its "listening" line."""
    log = open(log_path, "wb")
    env = dict(env)
    if journal:
        st = os.fstat(log.fileno())
        # What systemd sets when stderr is a journal stream: that stream's device and inode.
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=env, cwd="/", umask=umask
    )
    log.close()
    return Service(proc, wait_listening(proc, argv, log_path), log_path)


def stop(proc: subprocess.Popen[bytes]) -> int:
    """What `systemctl stop` does: SIGTERM, then SIGKILL after TimeoutStopSec."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    return proc.returncode


@pytest.mark.parametrize("unit_path", [SYSTEM_UNIT, USER_UNIT], ids=["system", "user"])
def test_the_unit_serves_with_keys_from_its_env_file_and_logs_for_the_journal(
    unit_path: Path, tmp_path: Path, fault_upstreams: FaultUpstreams
) -> None:
    provider_key = "sk-service-" + secrets.token_hex(12)
    adapter_key = "fp-" + secrets.token_hex(32)
    token = "fpm-service-" + secrets.token_hex(24)
    upstream = fault_upstreams("up", models=["svc-model"], keys=[provider_key])
    unit = parse_unit(unit_path)
    service = start_unit(
        unit,
        tmp_path,
        {
            "FP_SVC_PROVIDER_KEY": provider_key,
            "FP_SVC_ADAPTER_KEY": adapter_key,
            "FLEXIPROXY_MANAGEMENT_TOKEN": token,
            # The port is the env file's to choose; 0 keeps parallel runs apart.
            "FLEXIPROXY_PORT": "0",
        },
        service_config(upstream.base_url, "FP_SVC_PROVIDER_KEY", "FP_SVC_ADAPTER_KEY"),
    )
    try:
        assert service.url.startswith("http://127.0.0.1:"), service.url
        with ManagementClient(base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
            r = api.get("/api/status")
            assert r.status_code == 200, r.text
        client = openai.OpenAI(base_url=f"{service.url}/v1", api_key=adapter_key, max_retries=0, timeout=30)
        out = client.chat.completions.create(model="svc-model", messages=[{"role": "user", "content": "hi"}])
        assert out.choices[0].message.content == answer_text("up", provider_key)
        generation = [req for req in upstream.requests if req.generation]
        assert [req.key for req in generation] == [provider_key]
    finally:
        code = stop(service.proc)
    assert code == 0, f"exit {code} after SIGTERM\n{service.logs()[-4000:]}"

    logs = service.logs()
    lines = [line for line in logs.splitlines() if line]
    assert lines, "nothing logged"
    assert "\x1b" not in logs, f"colour escapes in the journal:\n{logs[-2000:]}"
    unprefixed = [line for line in lines if not re.match(r"<[0-7]>", line)]
    assert unprefixed == [], f"lines without a priority prefix:\n{unprefixed}"
    assert any(line.startswith("<6>") and "gateway started" in line for line in lines), logs[-2000:]
    # The journal stamps lines itself.
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", logs), logs[-2000:]
    for secret in (provider_key, adapter_key, token):
        assert secret not in logs


# -- upgrades --------------------------------------------------------------------------------------


def v3_data_dir(path: Path, upstream_url: str) -> Path:
    """A data folder holding the schema-3 fixture, its provider pointed at `upstream_url`."""
    path.mkdir(parents=True)
    db = sqlite3.connect(path / "flexiproxy.db")
    try:
        db.executescript(V3_FIXTURE.read_text())
        db.execute("UPDATE providers SET url = ? WHERE id = 'legacy'", (upstream_url,))
        db.commit()
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    finally:
        db.close()
    return path


def backups(data_dir: Path) -> list[Path]:
    folder = data_dir / "backups"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_an_old_database_is_backed_up_once_and_upgraded_with_its_data(
    start_gateway: GatewayFactory, fault_upstreams: FaultUpstreams, tmp_path: Path
) -> None:
    legacy_key = "sk-legacy-" + secrets.token_hex(12)
    upstream = fault_upstreams("legacy-up", models=["legacy-model"], keys=[legacy_key])
    data = v3_data_dir(tmp_path / "data", upstream.base_url)
    # Inherited from a parent whose stderr was the journal, but not ours: the usual format stays.
    env = {LEGACY_KEY_VAR: legacy_key, "JOURNAL_STREAM": "1:1"}

    gw = start_gateway(["--secrets", "env"], env=env, data_dir=data, log_level="info")
    providers = gw.api.get("/api/providers")
    assert providers.status_code == 200, providers.text
    assert [p["id"] for p in providers.json()] == ["legacy"]
    client = openai.OpenAI(base_url=gw.v1, api_key=LEGACY_ADAPTER_KEY, max_retries=0, timeout=30)
    out = client.chat.completions.create(model="legacy-model", messages=[{"role": "user", "content": "hi"}])
    assert out.choices[0].message.content == answer_text("legacy-up", legacy_key)

    found = backups(data)
    assert len(found) == 1 and BACKUP_NAME.fullmatch(found[0].name), found
    logs = gw.logs()
    assert (
        f"backed up the database to {found[0]} before upgrading it from schema v3 to v" in logs
    ), logs[-3000:]
    assert "INFO" in logs and not re.search(r"^<\d>", logs, re.M), "JOURNAL_STREAM naming another stream is ignored"
    copy = sqlite3.connect(f"file:{found[0]}?mode=ro", uri=True)
    try:
        assert copy.execute("PRAGMA user_version").fetchone()[0] == 3
        assert copy.execute("SELECT id FROM providers").fetchall() == [("legacy",)]
    finally:
        copy.close()
    assert gw.stop() == 0

    again = start_gateway(["--secrets", "env"], env=env, data_dir=data, log_level="info")
    assert [p["id"] for p in again.api.get("/api/providers").json()] == ["legacy"]
    assert backups(data) == found, "a current database is not backed up again"
    assert "backed up the database" not in again.logs()
    assert again.stop() == 0


def test_a_backup_that_cannot_be_written_stops_the_upgrade(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    data = v3_data_dir(tmp_path / "data", "http://127.0.0.1:9/v1")
    (data / "backups").write_text("a file where the backups folder goes")
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        [str(gateway_binary()), "--headless", "--port", "0", "--secrets", "env", "--data-dir", str(data)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "FLEXIPROXY_MANAGEMENT_TOKEN": "fpm-test-" + secrets.token_hex(16),
        },
    )
    assert done.returncode == 1, done
    assert "listening" not in done.stdout
    assert "cannot back up the database" in done.stderr and str(data / "backups") in done.stderr, done.stderr
    db = sqlite3.connect(f"file:{data / 'flexiproxy.db'}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3, "not migrated without a backup"
    finally:
        db.close()


# -- removing everything -------------------------------------------------------------------------


def readme_removal_commands() -> str:
    """The shell block the README gives for deleting everything on Linux."""
    text = (REPO / "README.md").read_text()
    at = text.index("To delete all of it on Linux")
    start = text.index("```sh\n", at) + len("```sh\n")
    return text[start : text.index("```", start)]


def test_the_readme_removal_commands_delete_the_data_and_every_keychain_entry(
    tests_need_keychain: None, tmp_path: Path
) -> None:
    secret_tool = need_tool("secret-tool", "libsecret-tools")
    need_tool("sqlite3", "sqlite3")
    home = tmp_path / "home"
    # The default data folder and the session's keychain, as a desktop user has them.
    env = scratch_env(home, {"FLEXIPROXY_LOG": "info"})
    gw = launch([str(gateway_binary()), "--headless", "--port", "0"], env, tmp_path / "gateway.log")
    try:
        shown = subprocess.run(
            [str(gateway_binary()), "--show-token"], capture_output=True, text=True, timeout=60, env=env
        )
        assert shown.returncode == 0, shown.stderr
        token = shown.stdout.strip()
        with ManagementClient(base_url=gw.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
            api.create_provider("doomed", "http://127.0.0.1:9/v1", api_key="sk-doomed-" + secrets.token_hex(12))
    finally:
        assert stop(gw.proc) == 0, gw.logs()[-3000:]
    data = home / ".local/share/flexiproxy"
    assert (data / "flexiproxy.db").exists()
    db = sqlite3.connect(f"file:{data / 'flexiproxy.db'}?mode=ro", uri=True)
    try:
        (instance,) = db.execute("SELECT value FROM settings WHERE key = 'instance_id'").fetchone()
    finally:
        db.close()
    autostart = home / ".config/autostart/FlexiProxy.desktop"
    autostart.parent.mkdir(parents=True)
    autostart.write_text("[Desktop Entry]\n")

    def entries() -> str:
        found = subprocess.run(
            [secret_tool, "search", "--all", "service", f"flexiproxy/{instance}"],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        return found.stdout + found.stderr

    before = entries()
    assert "management-token" in before and "credential:doomed/" in before, before

    done = subprocess.run(
        ["bash", "-euc", readme_removal_commands()], capture_output=True, text=True, timeout=60, env=env, cwd=home
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert entries().strip() == "", "keychain entries left behind"
    assert not data.exists() and not autostart.exists()
