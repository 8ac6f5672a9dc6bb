"""`make bench`: every benchmark of bench/, one after the other, side by side with its baseline;
the figures in reports/bench/*.json, the tables in reports/bench/*.md, the targets in
reports/bench/summary.md, the scaling plot in reports/bench/scaling.png.

    make bench                 # or: .venv/bin/python bench/suite.py [--huge] [--only NAME ...]

About 15 minutes on 2 cores (--huge adds 100M rows to the scaling run: skipped, with the reason,
where the smaller runs predict it will not fit in memory, as on this 24 GB machine).
Nothing of this checkout is touched: each benchmark builds its own workspace in a temp folder
with throw-away keys. In order:
  scaling        cold `dvc repro` at 10k, 100k, 1M, 10M rows: time and memory per stage, growth,
                 the plot, the profile of `edgeops capacity` (keeps the 1M workspace for:)
  stages         each stage vs its library alone on the 1M data; no-op repro vs `dvc status`
  contention     the 1M pipeline again while an agent serves traffic and monitoring runs
  export         the model in onnxruntime vs scikit-learn (1 row, 1,000 rows)
  monitor        `edgeops monitor` on 100,000 rows vs Evidently alone
  agent          the agent vs echo + model call (its floor), scikit-learn serving and KServe
  startup        `edgeops --help`, agent start -> ready
  orchestration  a training run through Prefect server + worker vs a bare `dvc repro`
A benchmark that fails is named in the summary; the others still run. The Prefect and agent
service figures go into reports/bench/profile.json for `edgeops capacity`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, REPO, say  # noqa: E402
from summary import services, summary  # noqa: E402

PY = sys.executable


def steps(ws: Path, huge: bool) -> dict[str, tuple[list[str], Path]]:
    """name -> (argv, cwd). Settings sized for the whole suite to fit about 20 minutes."""
    b = REPO / "bench"
    return {
        "scaling": (
            [PY, str(b / "scaling.py"), "--out-dir", str(OUT), "--keep", "1000000", str(ws)]
            + (["--huge"] if huge else []),
            REPO,
        ),
        "stages": (
            [
                PY,
                str(b / "stages.py"),
                "--workspace",
                str(ws),
                "--rounds",
                "2",
                "--noop-rounds",
                "3",
            ],
            REPO,
        ),
        "contention": ([PY, str(b / "contention.py"), "--workspace", str(ws)], REPO),
        "export": ([PY, str(b / "export.py"), "--out", str(OUT / "export.json")], ws),
        "monitor": (
            [
                PY,
                str(b / "monitor.py"),
                "--workspace",
                str(ws),
                "--rounds",
                "2",
                "--max-rows",
                "20000",
            ],
            REPO,
        ),
        "agent": (
            [
                PY,
                str(b / "agent.py"),
                "--duration",
                "5",
                "--warmup",
                "1",
                "--out",
                str(OUT / "agent.json"),
            ],
            REPO,
        ),
        "startup": ([PY, str(b / "startup.py")], REPO),
        "orchestration": (
            [PY, str(b / "orchestration.py"), "--rounds", "2", "--warmup", "1", "--poll", "2"],
            REPO,
        ),
    }


def run_step(name: str, argv: list[str], cwd: Path) -> dict[str, Any]:
    say(f"=== {name}: {' '.join(Path(a).name if a.startswith('/') else a for a in argv[1:])}")
    t0 = time.perf_counter()
    with open(OUT / f"{name}.txt", "w") as out:
        proc = subprocess.run(argv, cwd=cwd, stdout=out, stderr=None, text=True)
    seconds = round(time.perf_counter() - t0, 1)
    say(
        f"=== {name}: {'done' if proc.returncode == 0 else f'FAILED ({proc.returncode})'} "
        f"in {seconds:.0f} s -> reports/bench/{name}.txt"
    )
    return {"seconds": seconds, "returncode": proc.returncode}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--huge", action="store_true", help="add 100M rows to the scaling run")
    ap.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="run these benchmarks only "
        "(stages, contention, export and monitor need scaling's 1M workspace)",
    )
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="edgeops-bench-"))
    ws = tmp / "workspace-1m"
    todo = steps(ws, args.huge)
    names = args.only or list(todo)
    if set(names) & {"stages", "contention", "export", "monitor"} and "scaling" not in names:
        names = ["scaling", *names]  # they run on its 1M workspace
    runs: dict[str, Any] = {}
    t0 = time.perf_counter()
    try:
        for name in todo:
            if name in names:
                runs[name] = run_step(name, *todo[name])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = round(time.perf_counter() - t0, 1)
    services(OUT)
    md = summary(OUT, runs, total)
    (OUT / "summary.md").write_text(md)
    (OUT / "suite.json").write_text(json.dumps({"runs": runs, "seconds": total}, indent=2) + "\n")
    print(md)
    say(f"make bench: {total / 60:.1f} min -> reports/bench/summary.md")
    sys.exit(1 if any(r["returncode"] for r in runs.values()) else 0)


if __name__ == "__main__":
    main()
