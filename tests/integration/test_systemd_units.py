"""The systemd units in deploy/ load cleanly and stay sandboxed (systemd-analyze, systemd 252).

``systemd-analyze verify`` loads a unit as systemd would, including the check that every Exec*=
command exists. The commands live on the device, not here (/opt/edgeops/bin/edgeops, the
workspace's .venv), so verify runs with ``--root`` on a fake file system: the units, each
command as an empty executable file, the files the install steps put in /etc/edgeops
(telemetry-off.env), and this host's own unit files (sysinit.target and the other units every
service depends on). verify does not read an EnvironmentFile=; the test that the required ones
are installed stands in for systemd refusing to start without them.

``systemd-analyze security --offline=true`` scores a unit's sandboxing from 0 (locked down) to
10 (unprotected); the scores are printed (``pytest -s``).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
UNITS = sorted((REPO / "src/edgeops/examples").glob("*.service"))
MAX_EXPOSURE = 3.0
EXEC_KEYS = (
    "ExecCondition",
    "ExecStartPre",
    "ExecStart",
    "ExecStartPost",
    "ExecReload",
    "ExecStop",
    "ExecStopPost",
)
#: What the install steps copy to /etc/edgeops (docs/operations.md, section 5).
INSTALLED = {"/etc/edgeops/telemetry-off.env": REPO / "src/edgeops/telemetry-off.env"}
HOST_UNITS = next(
    (p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()), None
)


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    assert Path(path).is_file(), "systemd-analyze not found: install the Debian package systemd"
    return path


def unit_settings(text: str) -> list[tuple[str, str]]:
    """``(key, value)`` of every setting, continuation lines joined (no section tracking)."""
    settings, line = [], ""
    for raw in text.splitlines():
        if not line and raw.lstrip().startswith(("#", ";")):
            continue
        line += raw.rstrip()
        if line.endswith("\\"):
            line = line[:-1] + " "
            continue
        if "=" in line and not line.startswith("["):
            key, value = line.split("=", 1)
            settings.append((key.strip(), value.strip()))
        line = ""
    return settings


def exec_commands(unit: Path) -> list[str]:
    """The executables of a unit's Exec*= lines (prefixes such as ``-`` or ``+`` removed)."""
    return [
        shlex.split(value)[0].lstrip("-@:+!|")
        for key, value in unit_settings(unit.read_text())
        if key in EXEC_KEYS and value
    ]


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> Path:
    """A file system root with the units, their commands, /etc/edgeops and this host's units."""
    assert HOST_UNITS, "no /usr/lib/systemd/system: install the Debian package systemd"
    root = tmp_path_factory.mktemp("root")
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "lib").symlink_to("usr/lib")  # absolute links in there name /lib/systemd/system/...
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
        for command in exec_commands(unit):
            assert command.startswith("/"), f"{unit.name}: {command} is not an absolute path"
            exe = root / command.lstrip("/")
            exe.parent.mkdir(parents=True, exist_ok=True)
            exe.write_text("#!/bin/sh\n")
            exe.chmod(0o755)
    for dest, src in INSTALLED.items():
        (root / dest.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / dest.lstrip("/"))
    return root


def verify(root: Path, name: str) -> tuple[int, str]:
    """``systemd-analyze verify`` of a unit installed in ``root``: exit code, its own messages."""
    proc = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", f"--root={root}", name],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # warnings ("Unknown key ..., ignoring") leave the exit code 0: any line about the unit counts
    own = [line for line in (proc.stdout + proc.stderr).splitlines() if name in line]
    return proc.returncode, "\n".join(own)


def exposure(unit: Path) -> float:
    proc = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    m = re.search(r"Overall exposure level for (\S+): (\d+(?:\.\d+)?)", proc.stdout)
    assert m and m.group(1) == unit.name, f"no score for {unit.name}:\n{proc.stdout}{proc.stderr}"
    return float(m.group(2))


def test_the_units_are_found():
    assert {
        "edgeops-agent.service",
        "edgeops-prefect-server.service",
        "edgeops-prefect-worker.service",
    } <= {u.name for u in UNITS}


def test_exec_commands_are_read_from_the_units():
    assert exec_commands(REPO / "src/edgeops/examples/edgeops-agent.service") == [
        "/opt/edgeops/bin/edgeops"
    ]
    assert exec_commands(REPO / "src/edgeops/examples/edgeops-prefect-server.service") == [
        "/srv/edgeops/.venv/bin/prefect",
        "/bin/sh",
    ]


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_passes_systemd_analyze_verify(fake_root: Path, unit: Path):
    code, messages = verify(fake_root, unit.name)
    assert code == 0 and not messages, f"systemd-analyze verify {unit.name}:\n{messages}"


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_required_environment_files_are_the_installed_ones(fake_root: Path, unit: Path):
    """An EnvironmentFile= without '-' must exist or the start fails: only files the install
    steps put there (and every unit reads the telemetry switches)."""
    required = [
        v
        for k, v in unit_settings(unit.read_text())
        if k == "EnvironmentFile" and not v.startswith("-")
    ]
    assert "/etc/edgeops/telemetry-off.env" in required, f"{unit.name}: no telemetry switches"
    for path in required:
        assert path in INSTALLED, f"{unit.name}: {path} is required but no install step copies it"
        assert (fake_root / path.lstrip("/")).is_file()


def test_verify_on_the_fake_root_still_catches_a_missing_command(fake_root: Path):
    broken = "edgeops-broken.service"
    text = (REPO / "src/edgeops/examples/edgeops-agent.service").read_text()
    (fake_root / "etc/systemd/system" / broken).write_text(
        text.replace("/opt/edgeops/bin/edgeops", "/opt/nowhere/edgeops").replace(
            "UMask=0077", "UMask=0077\nNoSuchSetting=1"
        )
    )
    try:
        code, messages = verify(fake_root, broken)
    finally:
        (fake_root / "etc/systemd/system" / broken).unlink()
    assert code != 0 and "/opt/nowhere/edgeops" in messages
    assert "NoSuchSetting" in messages


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_exposure_is_at_most_3(unit: Path):
    score = exposure(unit)
    print(f"systemd-analyze security {unit.name}: {score}")
    assert score <= MAX_EXPOSURE, (
        f"{unit.name}: exposure {score} > {MAX_EXPOSURE} "
        f"(systemd-analyze security --offline=true deploy/{unit.name} lists what is missing)"
    )


def test_the_agent_tells_systemd_when_it_is_ready_and_when_it_stops(
    tmp_path: Path, signing_keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Type=notify: READY=1 once the agent listens (model loaded or known absent), STOPPING=1 on
    SIGTERM; without them systemd would time the start out and restart the agent in a loop."""
    import socket

    from tests.agent_process import AgentProcess

    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(30)
        monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
        agent = AgentProcess(tmp_path / "state", signing_keys / "signing.pub").start()
        try:
            assert sock.recv(4096) == b"READY=1"
        finally:
            agent.stop()
        assert sock.recv(4096) == b"STOPPING=1"
