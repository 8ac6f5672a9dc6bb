"""Benchmark: each pipeline stage against its library alone on the same data, and a no-op
`dvc repro` against `dvc status` on the same workspace.

    make bench-stages     # or: .venv/bin/python bench/stages.py [--rows 1000000] [--rounds 3]
                          #     [--workspace DIR] [--out reports/bench/stages.json]

Setup (not timed): a fresh copy of this checkout at --rows simulator rows after a cold
`dvc repro` (or --workspace: such a copy already built, e.g. by bench/scaling.py --keep), and a
throw-away signing key. Timed, rounds interleaved, each side in a fresh process from spawn to
exit (interpreter start and imports count on both sides):
  stage     the stage's own command from dvc.yaml, outputs moved to a scratch folder (so DVC's
            files are untouched), inputs the workspace's
  library   bench/baselines.py STAGE: the same work done by the libraries alone (see there)
Then --noop-rounds pairs of `dvc status` and `dvc repro` on the unchanged workspace.
Targets: each stage <= 1.3x its library (median of rounds); no-op repro <= 1.3x dvc status.
A table on stdout, progress on stderr, JSON in --out.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BIN,
    OUT,
    STAGES,
    median,
    say,
    stage_commands,
    throwaway_keys,
    timed_run,
    tool_env,
    workspace,
    write_json,
)

TARGET = 1.3


def stage_rounds(ws: Path, scratch: Path, env: dict[str, str], rounds: int) -> dict[str, Any]:
    cmds = stage_commands(ws, scratch)
    for argv in cmds.values():
        for a in argv:
            if a.startswith(str(scratch)):
                Path(a).parent.mkdir(parents=True, exist_ok=True)
    times: dict[str, dict[str, list[float]]] = {s: {"stage": [], "library": []} for s in STAGES}
    for r in range(rounds):
        for stage in STAGES:
            base = [
                sys.executable,
                str(Path(__file__).parent / "baselines.py"),
                stage,
                "--workspace",
                str(ws),
                "--scratch",
                str(scratch),
            ]
            order = [("stage", cmds[stage]), ("library", base)]
            for side, argv in order if r % 2 == 0 else order[::-1]:
                times[stage][side].append(round(timed_run(argv, ws, env), 3))
            t = times[stage]
            say(
                f"  round {r + 1}/{rounds} {stage}: stage {t['stage'][-1]:.2f} s, "
                f"library {t['library'][-1]:.2f} s"
            )
    out = {}
    for stage, t in times.items():
        s, lib = median(t["stage"]), median(t["library"])
        out[stage] = {"stage_s": s, "library_s": lib, "ratio": round(s / lib, 3), "rounds": t}
    return out


def noop_rounds(ws: Path, env: dict[str, str], rounds: int) -> dict[str, Any]:
    dvc = str(BIN / "dvc")
    timed_run([dvc, "repro"], ws, env)  # warm: the first call after the stages builds DVC's index
    status, repro = [], []
    for _ in range(rounds):
        status.append(round(timed_run([dvc, "status"], ws, env), 3))
        repro.append(round(timed_run([dvc, "repro"], ws, env), 3))
    s, r = median(status), median(repro)
    return {"status_s": s, "repro_s": r, "ratio": round(r / s, 3), "status": status, "repro": repro}


def table(rows: int, stages: dict[str, Any], noop: dict[str, Any]) -> str:
    lines = [
        f"| stage ({rows:,} rows) | edgeops | library alone | ratio (target <= {TARGET}) |",
        "| --- | --- | --- | --- |",
    ]
    for stage, f in stages.items():
        ok = "ok" if f["ratio"] <= TARGET else "MISSED"
        lines.append(
            f"| {stage} | {f['stage_s']:.2f} s | {f['library_s']:.2f} s | {f['ratio']:.2f} {ok} |"
        )
    ok = "ok" if noop["ratio"] <= TARGET else "MISSED"
    lines.append(
        f"| no-op `dvc repro` vs `dvc status` | {noop['repro_s']:.2f} s | "
        f"{noop['status_s']:.2f} s | {noop['ratio']:.2f} {ok} |"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000, help="simulator rows of the workspace")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds of every stage and library")
    ap.add_argument("--noop-rounds", type=int, default=5, help="dvc status / no-op dvc repro pairs")
    ap.add_argument(
        "--workspace", type=Path, help="a workspace after `dvc repro` (default: build one)"
    )
    ap.add_argument("--out", type=Path, default=OUT / "stages.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeops-bench-stages-") as tmp:
        env = throwaway_keys(Path(tmp), tool_env())
        ws = args.workspace
        if ws is None:
            say(f"--- a workspace at {args.rows:,} rows: cold dvc repro (not timed) ...")
            ws, _ = workspace(Path(tmp) / "ws", args.rows, env)
        rows = int(
            __import__("yaml").safe_load((ws / "params.yaml").read_text())["ingest"]["simulator"][
                "rows"
            ]
        )
        say(f"--- each stage vs its library alone, {args.rounds} rounds ...")
        stages = stage_rounds(ws, Path(tmp) / "scratch", env, args.rounds)
        say(f"--- no-op dvc repro vs dvc status, {args.noop_rounds} rounds ...")
        noop = noop_rounds(ws, env, args.noop_rounds)
    md = table(rows, stages, noop)
    write_json(
        args.out, {"rows": rows, "target": TARGET, "stages": stages, "noop": noop, "table": md}
    )
    print(md)
    say(f"-> {args.out}")


if __name__ == "__main__":
    main()
