"""Shared test setup: telemetry off for every process the tests start, loopback only."""

from __future__ import annotations

import os
import shutil
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


def copy_repo(dest: Path) -> Path:
    """A fresh git repository holding this checkout's tracked and untracked-but-not-ignored files,
    as they are in the working tree (so uncommitted changes are tested too), committed once."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, files):
        src = REPO / rel
        if not src.is_file() or rel == "dvc.lock":
            continue
        if rel.startswith("data/production/") and rel != "data/production/.gitkeep":
            continue  # this checkout's own collected logs (their .dvc files) are not the test's
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    env = tool_env()
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "test copy"]):
        subprocess.run(cmd, cwd=dest, check=True, env=env, capture_output=True)
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
