"""What the benchmarks share: paths, progress output, the machine, a pipeline workspace at N rows,
the stage commands of dvc.yaml, medians and atomic JSON results (reports/bench/)."""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent
OUT = REPO / "reports" / "bench"
STAGES = ("ingest", "validate", "split", "train", "evaluate", "export", "bundle")


def say(msg: str) -> None:
    """Progress on stderr (stdout carries the tables)."""
    print(msg, file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    """The cores, memory, CPU model and Python the figures were measured on."""
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next(
        (x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")),
        platform.processor(),
    )
    mem_kb = int(
        next(
            x.split()[1]
            for x in Path("/proc/meminfo").read_text().splitlines()
            if x.startswith("MemTotal")
        )
    )
    return {
        "cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(mem_kb / 1024**2, 1),
        "cpu": cpu,
        "python": platform.python_version(),
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename), with the machine and the time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        **data,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def tool_env(**extra: str) -> dict[str, str]:
    """The tests' subprocess environment (venv first on PATH, telemetry off) plus ``extra``."""
    from tests.conftest import tool_env as env

    return env() | extra


def set_rows(repo: Path, rows: int) -> None:
    """Point the simulator source of the workspace ``repo`` at ``rows`` rows."""
    import yaml

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["ingest"]["simulator"]["rows"] = rows
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def workspace(dest: Path, rows: int, env: dict[str, str]) -> tuple[Path, float]:
    """A fresh copy of this checkout at ``rows`` simulator rows after a cold ``dvc repro``.

    Returns the workspace and the repro's wall time. ``env`` must name a signing key
    (EDGEOPS_KEY_DIR) for the bundle stage.
    """
    from tests.conftest import init_project

    repo = init_project(dest)
    set_rows(repo, rows)
    start = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / "dvc"), "repro"], cwd=repo, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(
            f"dvc repro at {rows:,} rows failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    return repo, wall


def throwaway_keys(home: Path, env: dict[str, str]) -> dict[str, str]:
    """A signing key pair in ``home`` (never the user's own): the env that names it."""
    env = env | {"EDGEOPS_KEY_DIR": str(home / "keys")}
    subprocess.run([str(BIN / "edgeops"), "keys", "init"], env=env, check=True, capture_output=True)
    return env


def stage_commands(repo: Path, scratch: Path | None = None) -> dict[str, list[str]]:
    """Each stage's command from dvc.yaml, as argv. With ``scratch`` every output path in it is
    moved under ``scratch`` (inputs stay), so a stage can run again without touching DVC's files.
    """
    import yaml

    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    cmds = {}
    for name, st in stages.items():
        argv = shlex.split(st["cmd"])
        if scratch is not None:
            outs = {_path(o) for key in ("outs", "metrics", "plots") for o in st.get(key, [])}
            # an output, or the folder the stage writes its outputs into (--out-dir, --plots-dir)
            argv = [
                str(scratch / a) if a in outs or any(o.startswith(f"{a}/") for o in outs) else a
                for a in argv
            ]
        cmds[name] = argv
    return cmds


def _path(out: Any) -> str:
    return next(iter(out)) if isinstance(out, dict) else str(out)


def timed_run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 3600) -> float:
    """Wall seconds of a subprocess from spawn to exit; a failure stops the benchmark."""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall
