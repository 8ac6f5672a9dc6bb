"""Benchmark: the pipeline at growing row counts -> time and peak memory per stage, growth
exponents, a plot, and the capacity profile `edgeops capacity` plans from.

    .venv/bin/python bench/scaling.py [--rows 10000 100000 1000000 10000000] [--huge]
                                      [--out-dir reports/bench]

For each row count: a fresh copy of this repository (git + DVC, a throw-away signing key), the
simulator source at that many rows, a cold `dvc repro` (every stage runs). Each stage's wall time,
CPU time and peak memory come from the stage itself (reports/resources.json, edgeops.resources);
the bytes it leaves from the workspace (data/raw, data/prepared, models). The inference log's
bytes per row are measured by writing rows through the agent's own InferenceLog.

Writes, in --out-dir: scaling.json (every figure), scaling.md (the table), scaling.png (time and
memory against rows, log-log; needs matplotlib, a dev dependency) and profile.json (the input of
`edgeops capacity`). 10,000,000 rows take about 3.5 min here; --huge adds 100,000,000 (behind
this flag only). A size whose predicted peak memory (linear in the rows each stage holds, over the
runs before it: see edgeops.capacity.stage_caps) is over the machine's available memory is
skipped, with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, STAGES, machine, throwaway_keys, tool_env, workspace  # noqa: E402


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def run_at(rows: int, work: Path, env: dict[str, str], keep: Path | None = None) -> dict[str, Any]:
    """A cold `dvc repro` of a fresh copy at ``rows`` rows: per-stage resources and bytes.
    With ``keep`` the workspace is moved there afterwards (for bench/stages.py and contention)."""
    import yaml

    from edgeops.schema import schema_from_params

    repo, wall = workspace(work / f"rows-{rows}", rows, env)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    used = json.loads((repo / "reports/resources.json").read_text())["stages"]
    result = {
        "rows": rows,
        "repro_wall_s": round(wall, 2),
        "stages": {s: {k: used[s][k] for k in ("wall_s", "cpu_s", "peak_rss_mb")} for s in STAGES},
        "threads": used["train"]["threads"],
        "bytes": {
            "raw": dir_bytes(repo / "data/raw"),
            "prepared": dir_bytes(repo / "data/prepared"),
            "models": dir_bytes(repo / "models"),
        },
        "features": len(schema_from_params(params).features),
    }
    if keep is not None:
        shutil.rmtree(keep, ignore_errors=True)
        shutil.move(repo, keep)
    shutil.rmtree(repo, ignore_errors=True)
    return result


def inference_log_bytes_per_row(work: Path, rows: int = 20_000) -> float:
    """Rows written through the agent's InferenceLog (one row per request, as devices send)."""
    from edgeops.edge.inference_log import InferenceLog
    from edgeops.sources.simulator import simulate

    df = simulate(rows=rows, seed=3).drop(columns=["failure"])
    df["timestamp"] = df["timestamp"].astype(str)
    log = InferenceLog(work / "inference.db")
    for i, row in enumerate(df.to_dict("records")):
        log.append(f"req-{i:08d}", "20261205.000000-abcdef12", [row], [0], [[0.9, 0.1]], 0.4)
    log.flush(timeout=60)
    size = log.bytes_on_disk
    log.close()
    return size / rows


def growth(rows: list[int], values: list[float]) -> float:
    """The fitted exponent of ``edgeops.capacity.fit_growth`` (fixed cost from the smallest run)."""
    from edgeops.capacity import fit_growth

    return round(fit_growth(rows, values).b, 2)


def caps() -> dict[str, dict[str, int]]:
    """The rows each stage holds at most, under the params the runs use (see edgeops.capacity)."""
    from edgeops.capacity import stage_caps
    from edgeops.params import load_params

    return stage_caps(load_params(REPO / "params.yaml"))


def beyond_memory(runs: list[dict[str, Any]], rows: int) -> str | None:
    """Why ``rows`` would not fit in this machine's memory, by the linear fit of each stage's peak
    over the runs so far, in the rows the stage holds (None: it fits, or too few runs to tell)."""
    from edgeops.capacity import Profile

    if len(runs) < 2:
        return None
    profile = Profile(machine={}, features=0, threads=0, runs=runs, caps=caps())
    need = {s: profile.stage_fits(s)[1](profile.work_rows(s, rows, "memory")) for s in STAGES}
    stage, mb = max(need.items(), key=lambda kv: kv[1])
    have_kb = int(
        next(
            x.split()[1]
            for x in Path("/proc/meminfo").read_text().splitlines()
            if x.startswith("MemAvailable")
        )
    )
    if mb * 1024 <= have_kb:
        return None
    return (
        f"{stage} would need about {mb / 1024:.1f} GB at {rows:,} rows (linear in the rows "
        f"measured so far), this machine has {have_kb / 1024**2:.1f} GB available: the stages "
        "that grow with the data (split, evaluate) hold a column or the test split whole"
    )


def table(runs: list[dict[str, Any]]) -> str:
    rows = [r["rows"] for r in runs]
    head = "| stage | " + " | ".join(f"{n:,} rows" for n in rows) + " | growth exponent (time) |"
    lines = [head, "|" + " --- |" * (len(rows) + 2)]
    for stage in (*STAGES, "total"):
        if stage == "total":
            walls = [sum(r["stages"][s]["wall_s"] for s in STAGES) for r in runs]
            peaks = [max(r["stages"][s]["peak_rss_mb"] for s in STAGES) for r in runs]
        else:
            walls = [r["stages"][stage]["wall_s"] for r in runs]
            peaks = [r["stages"][stage]["peak_rss_mb"] for r in runs]
        cells = [f"{w:.1f} s, {p / 1024:.2f} GB" for w, p in zip(walls, peaks, strict=True)]
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {growth(rows, walls)} |")
    return "\n".join(lines) + "\n"


def plot(runs: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no scaling.png (uv sync --extra pipeline --dev)")
        return False
    rows = [r["rows"] for r in runs]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 5))
    for stage in STAGES:
        ax_t.plot(rows, [r["stages"][stage]["wall_s"] for r in runs], marker="o", label=stage)
        ax_m.plot(
            rows, [r["stages"][stage]["peak_rss_mb"] / 1024 for r in runs], marker="o", label=stage
        )
    for ax, label in ((ax_t, "wall time (s)"), (ax_m, "peak memory (GB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=8)
    fig.suptitle(f"edgeops pipeline scaling ({os.cpu_count()} cores, {runs[0]['threads']} threads)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 10_000_000])
    ap.add_argument("--huge", action="store_true", help="add 100M rows (hours; within 24 GB)")
    ap.add_argument("--out-dir", default=str(REPO / "reports/bench"))
    ap.add_argument(
        "--keep",
        nargs=2,
        metavar=("ROWS", "DIR"),
        help="keep the workspace of the run at ROWS rows in DIR (bench/stages.py and "
        "bench/contention.py --workspace DIR)",
    )
    args = ap.parse_args()
    keep_rows, keep_dir = (int(args.keep[0]), Path(args.keep[1])) if args.keep else (None, None)
    sizes = sorted(set(args.rows + ([100_000_000] if args.huge else [])))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edgeops-scaling-") as tmp:
        work = Path(tmp)
        env = throwaway_keys(work, tool_env())
        for n in sizes:
            too_big = beyond_memory(runs, n)
            if too_big:
                print(f"--- {n:,} rows: skipped. {too_big}", flush=True)
                skipped.append({"rows": n, "why": too_big})
                continue
            print(f"--- {n:,} rows: cold dvc repro ...", flush=True)
            runs.append(run_at(n, work, env, keep_dir if n == keep_rows else None))
            r = runs[-1]
            print(
                f"    {r['repro_wall_s']:.1f} s; "
                + ", ".join(f"{s} {r['stages'][s]['wall_s']:.1f} s" for s in STAGES),
                flush=True,
            )
        log_row = inference_log_bytes_per_row(work)
    profile = {
        "machine": machine(),
        "features": runs[0]["features"],
        "threads": runs[0]["threads"],
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": [{k: r[k] for k in ("rows", "stages", "bytes")} for r in runs],
        "services": {"inference_log_bytes_per_row": round(log_row, 1)},
        "caps": caps(),
    }
    (out / "profile.json").write_text(json.dumps(profile, indent=2) + "\n")
    (out / "scaling.json").write_text(
        json.dumps({**profile, "runs": runs, "skipped": skipped}, indent=2) + "\n"
    )
    md = table(runs)
    (out / "scaling.md").write_text(md)
    plotted = plot(runs, out / "scaling.png")
    print()
    print(md)
    print(f"inference log: {log_row:.0f} bytes per row on disk")
    print(f"-> {out}/profile.json, scaling.json, scaling.md" + (", scaling.png" if plotted else ""))


if __name__ == "__main__":
    main()
