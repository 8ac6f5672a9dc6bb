"""Benchmark: the pipeline at 1M rows while an agent serves steady traffic and monitoring runs on
the same box; each stage's time against its quiet time and its fair share.

    make bench-contention   # or: .venv/bin/python bench/contention.py [--rows 1000000]
                            #     [--rate 100] [--workspace DIR] [--out reports/bench/contention.json]

Setup: a workspace at --rows rows after a quiet cold `dvc repro` (or --workspace, built so by
bench/scaling.py --keep): its reports/resources.json holds each stage's QUIET wall and CPU time.
A real agent (loopback, the workspace's own bundle) is filled with 20,000 rows so monitoring has
a window, and a monitoring folder (its own git + DVC repo, params, targets, store) is set up.
Then, all at once on the same cores:
  traffic     `edgeops simulate --target bench --rate R --batch 1` (steady 1-row predicts with
              feedback) for as long as the pipeline runs
  monitoring  `edgeops monitor --target bench` back to back (collect, quality, drift, DVC add)
  pipeline    `dvc repro --force`: every stage runs again; each stage's wall and CPU time under
              contention come from the same reports/resources.json
Fair share: busy workloads n = 3 (the stage, the agent with its traffic, monitoring) on C cores;
a stage that used p cores quiet (its CPU / wall time, at most its thread setting) gets C / n
cores when all n are busy, so its time is expected to grow by max(1, p * n / C): 1.5 for a
one-core stage on 2 cores, 3 for a stage that kept both cores busy. Target: every
stage <= 1.5x its fair-share time. The other workloads' CPU during the run is measured (their
cores used on average) and shown, with the agent's /v1/predict latency (p50, p99: the upper
bounds of its histogram's buckets) over 15 s of traffic alone and during the pipeline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BIN,
    OUT,
    STAGES,
    say,
    stage_commands,
    throwaway_keys,
    tool_env,
    workspace,
    write_json,
)

TARGET = 1.5
BUSY = 3


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its reaped children (0 once it is gone)."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return next(
        (float(x.split()[1]) / 1024 for x in status.splitlines() if x.startswith(field)), 0.0
    )


def tree(pid: int) -> list[int]:
    """``pid`` and every live descendant."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants, live and reaped."""
    return sum(cpu_seconds(p) for p in tree(pid))


def monitoring_folder(mon: Path, ws: Path, agent_url: str, pub: Path, token: Path) -> Path:
    """A git + DVC repo holding the deployed bundle, its training split and the monitor params."""
    import yaml

    for rel in ("models/bundle", "data/prepared/train.parquet"):
        src, dst = ws / rel, mon / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    params = yaml.safe_load((ws / "params.yaml").read_text())
    (mon / "targets.yaml").write_text(
        yaml.safe_dump(
            {
                "public_key": str(pub),
                "targets": [{"name": "bench", "url": agent_url, "token_file": str(token)}],
            }
        )
    )
    params["deploy"].update(
        targets="targets.yaml", registry="registry.json", audit_log="audit.jsonl"
    )
    (mon / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = tool_env()
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=mon, env=env, check=True, capture_output=True)
    return mon


def start_agent(tmp: Path, ws: Path, pub: Path) -> Any:
    from tests.agent_process import DEPLOY_TOKEN, AgentProcess

    from edgeops.deploy.targets import AgentClient, Target
    from edgeops.edge.store import tar_bundle

    (tmp / "agent").mkdir()
    agent = AgentProcess(tmp / "agent" / "state", pub).start()
    token = tmp / "deploy.token"
    token.write_text(DEPLOY_TOKEN + "\n")
    client = AgentClient(Target(name="bench", url=agent.url, token_file=str(token)))
    client.upload(tar_bundle(ws / "models" / "bundle"), "bench", "bench/contention.py")
    return agent, token


def monitor_loop(mon: Path, env: dict[str, str], stop: Path) -> subprocess.Popen:
    """`edgeops monitor --target bench` back to back until ``stop`` exists."""
    script = (
        f"while [ ! -e {stop} ]; do {BIN / 'edgeops'} monitor --target bench "
        f'>> {mon / "monitor.log"} 2>&1; echo "exit $?" >> {mon / "monitor.log"}; done'
    )
    return subprocess.Popen(["bash", "-c", script], cwd=mon, env=env, start_new_session=True)


def fair_share(quiet: dict[str, Any], threads: int, cores: int) -> tuple[float, float]:
    """(p, factor): the cores the stage used quiet, and its expected slow-down under n busy."""
    p = min(max(quiet["cpu_s"] / max(quiet["wall_s"], 1e-9), 1.0), threads, cores)
    return round(p, 2), round(max(1.0, p * BUSY / cores), 2)


def judge(quiet: dict[str, Any], busy: dict[str, Any], threads: int, cores: int) -> dict[str, Any]:
    out = {}
    for s in STAGES:
        p, factor = fair_share(quiet[s], threads, cores)
        ratio = busy[s]["wall_s"] / quiet[s]["wall_s"]
        out[s] = {
            "quiet_s": quiet[s]["wall_s"],
            "busy_s": busy[s]["wall_s"],
            "quiet_cpu_s": quiet[s]["cpu_s"],
            "busy_cpu_s": busy[s]["cpu_s"],
            "cores_used_quiet": p,
            "fair_factor": factor,
            "ratio_to_quiet": round(ratio, 2),
            "ratio_to_fair": round(ratio / factor, 2),
            "threads": busy[s].get("threads"),
        }
    return out


def table(rows: int, judged: dict[str, Any], others: dict[str, Any]) -> str:
    lines = [
        f"| stage ({rows:,} rows) | quiet | under contention | CPU quiet / busy | "
        f"fair-share factor | vs fair share (target <= {TARGET}) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s, f in judged.items():
        ok = "ok" if f["ratio_to_fair"] <= TARGET else "MISSED"
        lines.append(
            f"| {s} | {f['quiet_s']:.1f} s | {f['busy_s']:.1f} s | {f['quiet_cpu_s']:.1f} / "
            f"{f['busy_cpu_s']:.1f} s | {f['fair_factor']:.2f} | {f['ratio_to_fair']:.2f} {ok} |"
        )
    lines.append("")
    lines.append(
        f"Beside the pipeline: the agent + traffic used {others['agent_cores']:.2f} cores, "
        f"monitoring {others['monitor_cores']:.2f} cores on average "
        f"({others['monitor_runs']} monitoring runs; {others['predictions']:,} predictions)."
    )
    lat = others["agent_latency_ms"]
    lines.append(
        f"The agent's /v1/predict latency, p50 / p99 (bucket bounds): with its traffic alone "
        f"{lat['alone']['p50']:g} / {lat['alone']['p99']:g} ms, beside the pipeline and "
        f"monitoring {lat['beside_pipeline']['p50']:g} / {lat['beside_pipeline']['p99']:g} ms."
    )
    return "\n".join(lines) + "\n"


def contended_repro(
    ws: Path, mon: Path, agent: Any, env: dict[str, str], rate: float
) -> dict[str, Any]:
    stop = mon / "stop"
    simulate = subprocess.Popen(
        [
            str(BIN / "edgeops"),
            "simulate",
            "--target",
            "bench",
            "--rows",
            str(int(rate * 3600)),
            "--rate",
            str(rate),
            "--batch",
            "1",
            "--seed",
            "5",
        ],
        cwd=mon,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    before = predictions(agent.url)
    deadline = time.monotonic() + 120
    while predictions(agent.url) == before and time.monotonic() < deadline:
        time.sleep(0.5)  # the traffic has built its rows and is sending: steady from here
    alone = latency_buckets(agent.url)
    time.sleep(15)  # the agent with its traffic only
    busy = latency_buckets(agent.url)
    monitor = monitor_loop(mon, env, stop)
    cpu0 = {"agent": tree_cpu(agent.proc.pid), "sim": tree_cpu(simulate.pid)}
    mon_cpu, mon_rss = 0.0, 0.0
    start = time.perf_counter()
    repro = subprocess.Popen(
        [str(BIN / "dvc"), "repro", "--force"],
        cwd=ws,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    while repro.poll() is None:  # monitoring's processes come and go: sample their tree
        mon_cpu = max(mon_cpu, tree_cpu(monitor.pid))
        mon_rss = max(mon_rss, sum(rss_mb(p) for p in tree(monitor.pid)[1:]))  # not bash
        time.sleep(0.5)
    wall = time.perf_counter() - start
    end = latency_buckets(agent.url)
    agent_cpu = tree_cpu(agent.proc.pid) - cpu0["agent"] + tree_cpu(simulate.pid) - cpu0["sim"]
    stop.touch()
    os.killpg(simulate.pid, signal.SIGTERM)
    mon_cpu = max(mon_cpu, tree_cpu(monitor.pid))
    monitor.wait(timeout=300)
    simulate.wait(timeout=30)
    if repro.returncode != 0:
        raise SystemExit(
            f"dvc repro --force under contention failed:\n{repro.stdout.read()[-3000:]}"
        )
    log = (mon / "monitor.log").read_text()
    return {
        "wall_s": round(wall, 1),
        "agent_peak_rss_mb": round(rss_mb(agent.proc.pid, "VmHWM")),
        "monitor_peak_rss_mb": round(mon_rss),
        "agent_cores": agent_cpu / wall,
        "monitor_cores": mon_cpu / wall,
        "monitor_runs": log.count("\nexit ") + log.startswith("exit "),
        "agent_latency_ms": {
            "alone": quantiles(alone, busy),
            "beside_pipeline": quantiles(busy, end),
        },
        "monitor_exits": sorted(set(line for line in log.splitlines() if line.startswith("exit "))),
    }


def latency_buckets(agent_url: str) -> dict[float, float]:
    """The agent's /v1/predict latency histogram now: bucket upper bound (s) -> requests."""
    import urllib.request

    with urllib.request.urlopen(agent_url + "/metrics", timeout=5) as r:
        lines = r.read().decode().splitlines()
    out = {}
    for x in lines:
        if x.startswith("edgeops_request_seconds_bucket{") and 'endpoint="/v1/predict"' in x:
            le = x.split('le="', 1)[1].split('"', 1)[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(x.split()[-1])
    return out


def quantiles(a: dict[float, float], b: dict[float, float]) -> dict[str, float]:
    """p50 and p99 (ms, bucket upper bounds) of the requests between snapshots ``a`` and ``b``."""
    counts = sorted((le, b[le] - a.get(le, 0.0)) for le in b)
    total = counts[-1][1] if counts else 0.0
    out: dict[str, float] = {"requests": total}
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        out[name] = next((le * 1e3 for le, c in counts if total and c >= q * total), float("nan"))
    return out


def predictions(agent_url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(agent_url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    return int(
        sum(
            float(x.split()[-1])
            for x in text.splitlines()
            if x.startswith("edgeops_predictions_total")
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000, help="simulator rows of the pipeline")
    ap.add_argument(
        "--rate", type=float, default=100.0, help="1-row predicts a second to the agent"
    )
    ap.add_argument("--workspace", type=Path, help="a workspace after a quiet `dvc repro`")
    ap.add_argument("--out", type=Path, default=OUT / "contention.json")
    args = ap.parse_args()
    import yaml

    tmp = Path(tempfile.mkdtemp(prefix="edgeops-bench-contention-"))
    agent = None
    try:
        env = throwaway_keys(tmp, tool_env())
        ws = args.workspace
        if ws is None:
            say(f"--- a workspace at {args.rows:,} rows: quiet cold dvc repro ...")
            ws, _ = workspace(tmp / "ws", args.rows, env)
        used = json.loads((ws / "reports/resources.json").read_text())["stages"]
        quiet = {s: dict(used[s]) for s in STAGES}
        # the bundle again, signed with this run's key: the agent verifies it with its public half
        subprocess.run(
            stage_commands(ws)["bundle"], cwd=ws, env=env, check=True, capture_output=True
        )
        pub = Path(env["EDGEOPS_KEY_DIR"]) / "signing.pub"
        agent, token = start_agent(tmp, ws, pub)
        mon = monitoring_folder(tmp / "monitoring", ws, agent.url, pub, token)
        say("--- filling the agent's log (20,000 rows, not timed) ...")
        subprocess.run(
            [
                str(BIN / "edgeops"),
                "simulate",
                "--target",
                "bench",
                "--rows",
                "20000",
                "--batch",
                "500",
                "--seed",
                "4",
            ],
            cwd=mon,
            env=env,
            check=True,
            capture_output=True,
        )
        say(f"--- dvc repro --force with traffic at {args.rate:g} req/s and monitoring ...")
        others = contended_repro(ws, mon, agent, env, args.rate)
        others["predictions"] = predictions(agent.url)
        used = json.loads((ws / "reports/resources.json").read_text())["stages"]
        threads = int(used["train"]["threads"])
        judged = judge(quiet, used, threads, len(os.sched_getaffinity(0)))
        rows = int(yaml.safe_load((ws / "params.yaml").read_text())["ingest"]["simulator"]["rows"])
    finally:
        if agent is not None:
            agent.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    md = table(rows, judged, others)
    write_json(
        args.out,
        {
            "rows": rows,
            "rate": args.rate,
            "busy_workloads": BUSY,
            "target": TARGET,
            "threads": threads,
            "stages": judged,
            "others": others,
            "table": md,
        },
    )
    print(md)
    say(f"-> {args.out}")


if __name__ == "__main__":
    main()
