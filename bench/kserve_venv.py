"""The KServe peer's own virtual environment (its pins clash with ours): created with uv at
.venv-bench/kserve (git-ignored), reused while its python imports the pinned versions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KSERVE_VERSION = "0.21.0"
KSERVE_EXCLUDE_NEWER = "2026-12-01T00:00:00Z"  # uv resolves KServe's dependencies as of this date
KSERVE_VENV = REPO / ".venv-bench" / "kserve"
KSERVE_CHECK = (
    "import json, importlib.metadata as m, kserve, numpy, onnxruntime; "
    "print(json.dumps({p: m.version(p) for p in ('kserve', 'onnxruntime', 'numpy')}))"
)


def kserve_pins() -> dict[str, str]:
    """What the KServe venv holds: kserve as pinned here, onnxruntime and numpy as in this venv."""
    from importlib.metadata import version

    return {
        "kserve": KSERVE_VERSION,
        "onnxruntime": version("onnxruntime"),
        "numpy": version("numpy"),
    }


def _python_runs(python: Path, code: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(
            [str(python), "-I", "-c", code], capture_output=True, text=True, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def kserve_installed(python: Path) -> dict[str, str] | None:
    """The versions of kserve, onnxruntime and numpy that ``python`` imports, else None."""
    out = _python_runs(python, KSERVE_CHECK) if python.is_file() else None
    return json.loads(out.stdout.splitlines()[-1]) if out and out.returncode == 0 else None


def uv_command() -> list[str] | None:
    if shutil.which("uv"):
        return ["uv"]
    probe = subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True)
    return [sys.executable, "-m", "uv"] if probe.returncode == 0 else None


def kserve_venv() -> dict[str, Any]:
    """KSERVE_VENV, reused when its python imports the pins, else created / updated with uv.

    {"python", "versions", "created", "seconds"}, or {"skipped": why}."""
    python, pins = KSERVE_VENV / "bin" / "python", kserve_pins()
    start = time.monotonic()
    if kserve_installed(python) == pins:
        return {
            "python": str(python),
            "versions": pins,
            "created": False,
            "seconds": time.monotonic() - start,
        }
    uv = uv_command()
    if uv is None:
        return {"skipped": "uv is not installed (pip install uv): no venv for KServe"}
    steps = [
        [
            *uv,
            "pip",
            "install",
            "--no-config",
            "--python",
            str(python),
            "--exclude-newer",
            KSERVE_EXCLUDE_NEWER,
            *(f"{k}=={v}" for k, v in pins.items()),
        ]
    ]
    ok = _python_runs(python, "") if python.is_file() else None
    if not ok or ok.returncode:
        steps.insert(
            0, [*uv, "venv", "--no-config", "--clear", str(KSERVE_VENV), "--python", "3.11"]
        )
    print(
        f"kserve: preparing {KSERVE_VENV.relative_to(REPO)} with uv "
        f"({', '.join(f'{k} {v}' for k, v in pins.items())}) ...",
        flush=True,
    )
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never")  # Python 3.11 from this machine only
    for cmd in steps:
        what = "uv " + " ".join(cmd[len(uv) : len(uv) + 2])
        try:
            out = subprocess.run(
                cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=1800
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"skipped": f"`{what}` failed: {exc}"}
        if out.returncode:
            lines = [x.strip() for x in out.stderr.splitlines() if x.strip()] or ["(no output)"]
            first = next((x for x in lines if x.lower().startswith("error")), lines[0])
            why = first if first == lines[-1] else f"{first} ... {lines[-1]}"
            return {"skipped": f"`{what}` failed ({out.returncode}): {why[:400]}"}
    have = kserve_installed(python)
    if have != pins:
        return {"skipped": f"the KServe venv imports {have}, not {pins}"}
    return {
        "python": str(python),
        "versions": pins,
        "created": True,
        "seconds": time.monotonic() - start,
    }
