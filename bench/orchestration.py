"""Benchmark: a `training` run through the Prefect server + a worker vs a bare `dvc repro`.

    make bench-orchestration   # or: .venv/bin/python bench/orchestration.py [--rounds 3]
                               #     [--rows 50000] [--poll SECONDS] [--warmup 1]
Example: .venv/bin/python bench/orchestration.py --rounds 5 --poll 2

Its own workspace (a temp copy of this checkout, a free port, its own work pool, DVC remote and
throw-away signing keys: a running `edgeops up` and your keys are untouched), filled by `dvc repro`
+ `dvc push` (not timed); `edgeops up` there, the worker polling every PREFECT_WORKER_QUERY_SECONDS
(Prefect's default 10 s unless --poll; Prefect adds +-30 % jitter). Then rounds, each after a
random 0..poll s pause (so the trigger does not phase-lock to the poll): (a) a bare `dvc repro`
subprocess on the unchanged data (wall time); (b) a `training` run, deploy=False (no device: this
measures the orchestration, not the agents), created through the REST API and timed by the
server's fields, not by our polling: created -> Running = scheduling latency (poll wait, flow-run
process start + flow import), Running -> Completed = execution (7 DVC stage tasks, push, record,
workspace slot), created -> Completed = total. Goal, per round: total <= scheduling + 1.2 x bare,
i.e. the orchestrator adds at most the server's scheduling latency plus 20 %. Table on stdout
(progress on stderr), JSON in reports/bench/orchestration.json.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STAGES = ["ingest", "validate", "split", "train", "evaluate", "export", "bundle"]
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def sh(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 1800) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout + proc.stderr


class Api:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/api"
        self.headers = {"Content-Type": "application/json"}
        if auth := os.environ.get("PREFECT_API_AUTH_STRING"):
            self.headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data, self.headers, method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")


def alive(pid: int) -> bool:
    try:  # a zombie has exited already
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def flow_round(api: Api, deployment: str, ws: Path, bare: float) -> dict[str, Any]:
    """One training run (deploy=False) through the server; its times from the API, in seconds."""
    body = {"parameters": {"reason": "bench", "deploy": False}}
    run = api("POST", f"/deployments/{deployment}/create_flow_run", body)
    deadline = time.monotonic() + 900
    while run["state"]["type"] not in FINAL:
        if time.monotonic() > deadline:
            raise SystemExit(f"flow run {run['name']} still {run['state']['name']} after 900 s")
        time.sleep(0.25)
        run = api("GET", f"/flow_runs/{run['id']}")
    if run["state"]["type"] != "COMPLETED":
        log = (ws / ".prefect/logs/worker-1.log").read_text()[-4000:]
        state = f"{run['state']['name']}: {run['state'].get('message')}"
        raise SystemExit(f"flow run {run['name']}: {state}\nworker log (end):\n{log}")
    states = api("GET", f"/flow_run_states/?flow_run_id={run['id']}")
    first: dict[str, float] = {}
    for st in sorted(states, key=lambda s: ts(s["timestamp"])):
        first.setdefault(st["type"], ts(st["timestamp"]))
    created, pending = ts(run["created"]), first["PENDING"]
    running = ts(run["start_time"]) if run.get("start_time") else first["RUNNING"]
    ended = ts(run["end_time"]) if run.get("end_time") else first["COMPLETED"]
    tasks = api("POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}})
    spans = {t["name"].rsplit("-", 1)[0]: (ts(t["start_time"]), ts(t["end_time"])) for t in tasks}
    stage = [spans[s] for s in STAGES]
    durations = [b - a for a, b in stage]
    push, record = (spans[k][1] - spans[k][0] for k in ("push", "record"))
    execution, stages_span = ended - running, stage[-1][1] - stage[0][0]
    rest = execution - stages_span - push - record
    pid, deadline = str(run.get("infrastructure_pid") or "0"), time.monotonic() + 30
    while alive(int(pid.rsplit(":", 1)[-1])) and time.monotonic() < deadline:
        time.sleep(0.1)  # the flow-run process exits before the next measurement
    return {
        "run": run["name"],
        "bare": bare,
        "total": ended - created,
        "scheduling": running - created,
        "poll_wait": pending - created,
        "process_start": running - pending,
        "execution": execution,
        "stages_span": stages_span,
        "stages_sum": sum(durations),
        "first_stage": durations[0],
        "other_stages_sum": sum(durations[1:]),
        "push": push,
        "record": record,
        "rest": rest,
        "before_tasks": stage[0][0] - running,
        "after_tasks": ended - spans["record"][1],
        "ratio": execution / bare,
    }


ROWS = [
    ("bare", "bare `dvc repro` (subprocess, wall)"),
    ("total", "training run: total (created -> Completed)"),
    ("scheduling", "  scheduling latency (created -> Running)"),
    ("poll_wait", "    worker poll wait (created -> Pending)"),
    ("process_start", "    process start + flow import (Pending -> Running)"),
    ("execution", "  execution (Running -> Completed)"),
    ("stages_span", "    7 DVC stage tasks (first start -> last end)"),
    ("first_stage", "      first stage task (incl. DVC import)"),
    ("other_stages_sum", "      other 6 stage tasks (sum)"),
    ("push", "    push task (dvc push, nothing new)"),
    ("record", "    record task (artifacts)"),
    ("rest", "    rest (settings, workspace slot, task/state calls)"),
    ("before_tasks", "      before the first task (settings, slot taken)"),
    ("after_tasks", "      after the last task (slot released, Completed)"),
    ("ratio", "ratio (total - scheduling) / bare, per round"),
]


def services(home: Path) -> dict[str, float]:
    """The Prefect database's bytes (with its WAL) and the server's and worker's RSS now (MB)."""
    db = sum(f.stat().st_size for f in home.glob("prefect.db*"))

    def rss(pidfile: Path) -> float:
        try:
            status = Path(f"/proc/{int(pidfile.read_text())}/status").read_text()
        except (OSError, ValueError):
            return 0.0
        return (
            float(next(x.split()[1] for x in status.splitlines() if x.startswith("VmRSS"))) / 1024
        )

    return {
        "db_bytes": db,
        "server_rss_mb": rss(home / "run" / "server.pid"),
        "worker_rss_mb": rss(home / "run" / "worker-1.pid"),
    }


def leftovers(home: Path) -> list[int]:
    """Live processes whose environment names this run's Prefect home."""
    marker, found = f"PREFECT_HOME={home}".encode(), []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            if marker in (proc / "environ").read_bytes().split(b"\0") and alive(int(proc.name)):
                found.append(int(proc.name))
    return found


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds (bare repro + flow run)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    ap.add_argument("--rows", type=int, default=50_000, help="ingest.simulator.rows")
    ap.add_argument(
        "--poll",
        type=float,
        default=None,
        help="PREFECT_WORKER_QUERY_SECONDS (default: Prefect's own, 10 s)",
    )
    ap.add_argument("--out", default=str(REPO / "reports" / "bench" / "orchestration.json"))
    args = ap.parse_args()

    import yaml

    sys.path.insert(0, str(REPO))
    from tests.agent_process import free_port
    from tests.conftest import BIN, init_project, tool_env

    tmp = Path(tempfile.mkdtemp(prefix="edgeops-bench-orch-"))
    ws, port = tmp / "workspace", free_port()
    env = {
        k: v
        for k, v in tool_env().items()
        if not k.startswith("PREFECT_") or k == "PREFECT_API_AUTH_STRING"
    }
    env.pop("EDGEOPS_WORKSPACE", None)
    env["EDGEOPS_KEY_DIR"] = str(tmp / "keys")
    if args.poll is not None:
        env["PREFECT_WORKER_QUERY_SECONDS"] = f"{args.poll:g}"
    query = 10.0 if args.poll is None else args.poll
    poll = f"{query:g} s ({'--poll' if args.poll is not None else 'Prefect default'})"
    edgeops, dvc, started = str(BIN / "edgeops"), str(BIN / "dvc"), False
    try:
        say(f"workspace: {ws} ({args.rows:,} rows, server on 127.0.0.1:{port}, poll {poll})")
        init_project(ws)
        params = yaml.safe_load((ws / "params.yaml").read_text())
        params["ingest"]["simulator"]["rows"] = args.rows
        params["orchestration"].update(port=port, work_pool=f"edgeops-bench-{port}")
        (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        sh([dvc, "remote", "add", "-f", "-d", "localstore", str(tmp / "dvc-remote")], ws, env)
        sh(["git", "commit", "-qam", "bench workspace"], ws, env)
        sh([edgeops, "keys", "init", "--dir", str(tmp / "keys")], ws, env)
        t0 = time.perf_counter()
        sh([dvc, "repro"], ws, env)
        sh([dvc, "push"], ws, env)
        say(f"filled: dvc repro + dvc push in {time.perf_counter() - t0:.0f} s (not timed)")
        lock = hashlib.sha256((ws / "dvc.lock").read_bytes()).hexdigest()
        started, t0 = True, time.perf_counter()
        for line in sh([edgeops, "up"], ws, env, timeout=600).splitlines():
            say(f"  up | {line}")
        say(f"edgeops up in {time.perf_counter() - t0:.0f} s")
        api = Api(port)
        deployment = api("GET", "/deployments/name/training/plant")["id"]

        rounds: list[dict[str, Any]] = []
        before = services(ws / ".prefect")
        jitter = random.Random(0)
        for i in range(args.warmup + args.rounds):
            time.sleep(jitter.uniform(0, query))
            label = f"warm-up {i + 1}" if i < args.warmup else f"round {i - args.warmup + 1}"
            t0 = time.perf_counter()
            out = sh([dvc, "repro"], ws, env)
            bare = time.perf_counter() - t0
            if "Running stage" in out:
                raise SystemExit(f"bare dvc repro re-ran a stage: the data changed\n{out}")
            r = flow_round(api, deployment, ws, bare)
            if hashlib.sha256((ws / "dvc.lock").read_bytes()).hexdigest() != lock:
                raise SystemExit("dvc.lock changed during the flow run: a stage re-ran")
            say(
                f"{label}: bare {bare:.2f} s | {r['run']}: total {r['total']:.2f} s = "
                f"scheduling {r['scheduling']:.2f} + execution {r['execution']:.2f}"
            )
            if i >= args.warmup:
                rounds.append(r)
        after = services(ws / ".prefect")
        prefect = {
            "db_bytes_per_run": (after["db_bytes"] - before["db_bytes"]) / (i + 1),
            "server_rss_mb": round(after["server_rss_mb"]),
            "worker_rss_mb": round(after["worker_rss_mb"]),
            "db_bytes": after["db_bytes"],
        }
    finally:
        if started:
            proc = subprocess.run(
                [edgeops, "down"], cwd=ws, env=env, capture_output=True, text=True, timeout=180
            )
            say(f"  down | {(proc.stdout + proc.stderr).strip()}")
            for sig in (signal.SIGTERM, signal.SIGKILL):  # none expected: down stops them all
                time.sleep(2)
                for pid in leftovers(ws / ".prefect"):  # ours: their environment names our home
                    say(f"left behind: pid {pid}, sending {sig.name}")
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(r[k] for r in rounds) for k, _ in ROWS}
    ratios = {
        "execution / bare (medians)": med["execution"] / med["bare"],
        "(total - scheduling) / bare (median of rounds)": med["ratio"],
        "(total - poll wait) / bare (info)": (med["total"] - med["poll_wait"]) / med["bare"],
    }
    met = sum(r["ratio"] <= 1.2 for r in rounds)
    ok = med["ratio"] <= 1.2
    print(
        f"{len(rounds)} rounds (+{args.warmup} warm-up), {args.rows:,} rows, unchanged data, "
        f"deploy=False (no devices), worker poll {poll}, {os.cpu_count()} CPUs"
    )
    print(f"{'seconds':54s}{'median':>8s}{'min':>8s}{'max':>8s}")
    for key, name in ROWS:
        vals = [r[key] for r in rounds]
        print(f"{name:54s}{med[key]:8.2f}{min(vals):8.2f}{max(vals):8.2f}")
    print()
    for name, value in ratios.items():
        print(f"{name:48s} {value:6.2f}")
    print(
        f"goal total <= scheduling + 1.2 x bare: {'met' if ok else 'NOT met'} (median "
        f"ratio {med['ratio']:.3f} vs 1.2; {met}/{len(rounds)} rounds met it)"
    )
    print(
        f"Prefect: the database grows {prefect['db_bytes_per_run'] / 1e3:.0f} kB per training run; "
        f"server RSS {prefect['server_rss_mb']} MB, worker RSS {prefect['worker_rss_mb']} MB"
    )

    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "rows": args.rows,
        "warmup": args.warmup,
        "worker_query_seconds": poll,
        "deploy": False,
        "rounds": rounds,
        "median": med,
        "ratios": ratios,
        "prefect": prefect,
        "goal": {"total <= scheduling + 1.2 * bare": ok, "rounds_met": met},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
