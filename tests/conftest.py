"""Shared test setup: telemetry off for every process the tests start, loopback only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeops.offline import TELEMETRY_OFF

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# before any library under test is imported by a test module
for _k, _v in TELEMETRY_OFF.items():
    os.environ.setdefault(_k, _v)


def tool_env() -> dict[str, str]:
    """Environment for subprocesses: the venv's python/dvc/edgeops first on PATH, telemetry off."""
    env = dict(os.environ)
    env.update(TELEMETRY_OFF)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def init_project(dest: Path, *args: str) -> Path:
    """A fresh project made the way a user makes one: ``edgeops init DEST`` (default: the demo
    plant, ``--example plant``), with the installed edgeops (this checkout, editable: uncommitted
    changes of the template are tested too). A git + DVC repository, committed once."""
    chosen = list(args) or ["--example", "plant"]
    subprocess.run(
        [str(BIN / "edgeops"), "init", str(dest), *chosen],
        check=True,
        env=tool_env(),
        capture_output=True,
    )
    return dest


@pytest.fixture(scope="session", autouse=True)
def signing_keys(tmp_path_factory) -> Path:
    """A throw-away signing key pair for the whole run (never the user's own keys)."""
    from edgeops.keys import init_keys

    key_dir = tmp_path_factory.mktemp("edgeops-keys")
    init_keys(key_dir)
    os.environ["EDGEOPS_KEY_DIR"] = str(key_dir)
    return key_dir


@pytest.fixture
def run_tool():
    """Run a command with the test environment; return the CompletedProcess (never raises)."""

    def _run(args: list[str], cwd: Path, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            args,
            cwd=cwd,
            env=kw.pop("env", tool_env()),
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,
        )

    return _run
