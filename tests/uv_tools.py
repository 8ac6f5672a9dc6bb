"""uv for the tests that build a fresh venv from this checkout (a device's base install, a
project's wheel-only install): uv installs from its cache when it can and from the package index
otherwise; with neither, the test fails and says so."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NETWORK_HINT = (
    "this test installs the package into a fresh venv with uv: it needs uv's cache or the "
    "package index (is the network available?)"
)


def uv_env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    env.update(DO_NOT_TRACK="1", UV_NO_PROGRESS="1")
    return env


def run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """A command in this checkout with uv's environment (no venv of the tests leaks in)."""
    return subprocess.run(
        args, cwd=REPO, env=uv_env(), capture_output=True, text=True, timeout=timeout
    )


def must(proc: subprocess.CompletedProcess, what: str) -> str:
    if proc.returncode != 0:
        pytest.fail(
            f"{what} failed (exit {proc.returncode}): {NETWORK_HINT}\n"
            f"$ {' '.join(map(str, proc.args))}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc.stdout


def uv_path() -> str:
    # the dev group installs uv into the project venv, so a fresh CI machine has it too
    beside = Path(sys.executable).parent / "uv"
    uv = str(beside) if beside.is_file() else shutil.which("uv")
    if not uv:
        pytest.fail("uv is not in the venv nor on PATH: `make venv` installs it (dev group)")
    return uv
