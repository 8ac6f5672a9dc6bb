"""Benchmark: start-up times a user waits for: `edgeops --help`, and the agent from process start
to ready (GET /readyz 200) with a model deployed; beside each, the bare interpreter's start.

    make bench-startup    # or: .venv/bin/python bench/startup.py [--starts 5] [--helps 10]

The agent gets a real trained bundle (tests/bundles.make_bundle, a throw-away key) deployed
once; then it is started --starts times on the same state folder (the deployed model is loaded
at start), /readyz polled every 5 ms. Targets: `edgeops --help` <= 0.3 s, agent <= 1 s (medians).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIN, OUT, median, say, tool_env, write_json  # noqa: E402

HELP_TARGET, AGENT_TARGET = 0.3, 1.0


def timed(argv: list[str], n: int) -> list[float]:
    env = tool_env()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True)
        out.append(round(time.perf_counter() - t0, 3))
    return out


def ready_after(agent: object) -> float:
    """Spawn the (stopped) agent again; seconds until /readyz answers 200."""
    t0 = time.perf_counter()
    agent.start(timeout=60)  # returns on /healthz
    while True:
        try:
            with urllib.request.urlopen(agent.url + "/readyz", timeout=1) as r:
                if r.status == 200:
                    return round(time.perf_counter() - t0, 3)
        except (urllib.error.URLError, OSError):
            pass
        if time.perf_counter() - t0 > 60:
            raise SystemExit("the agent was not ready within 60 s")
        time.sleep(0.005)


def agent_starts(n: int) -> list[float]:
    from tests.agent_process import DEPLOY_TOKEN, AgentProcess
    from tests.bundles import make_bundle

    from edgeops.edge.store import tar_bundle
    from edgeops.keys import init_keys

    with tempfile.TemporaryDirectory(prefix="edgeops-bench-startup-") as tmp:
        tmp = Path(tmp)
        init_keys(tmp / "keys")
        bundle = make_bundle(
            tmp / "bundle", tmp / "keys", "20261205.000000-bench001", model="hist_gradient_boosting"
        )
        (tmp / "agent").mkdir()
        agent = AgentProcess(tmp / "agent" / "state", tmp / "keys" / "signing.pub")
        agent.start()
        req = urllib.request.Request(
            agent.url + "/v1/bundles",
            data=tar_bundle(bundle),
            method="POST",
            headers={"Authorization": f"Bearer {DEPLOY_TOKEN}", "Content-Type": "application/gzip"},
        )
        with urllib.request.urlopen(req, timeout=120) as r:
            assert r.status in (200, 201), r.status
        agent.stop()
        out = []
        for _ in range(n):
            out.append(ready_after(agent))
            agent.stop()
        return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--starts", type=int, default=5, help="agent starts")
    ap.add_argument("--helps", type=int, default=10, help="`edgeops --help` runs")
    ap.add_argument("--out", type=Path, default=OUT / "startup.json")
    args = ap.parse_args()
    say("--- python -c pass, edgeops --help ...")
    bare = timed([sys.executable, "-c", "pass"], args.helps)
    helps = timed([str(BIN / "edgeops"), "--help"], args.helps)
    say(f"--- the agent, {args.starts} starts with a model deployed ...")
    starts = agent_starts(args.starts)
    fig = {
        "python_s": median(bare),
        "help_s": median(helps),
        "agent_ready_s": median(starts),
        "help_runs": helps,
        "agent_runs": starts,
    }
    md = (
        "\n".join(
            [
                "| start-up | median | runs | baseline: `python -c pass` | target |",
                "| --- | --- | --- | --- | --- |",
                f"| `edgeops --help` | {fig['help_s']:.2f} s | {len(helps)} | {fig['python_s']:.2f} s | "
                f"<= {HELP_TARGET} s {'ok' if fig['help_s'] <= HELP_TARGET else 'MISSED'} |",
                f"| agent start -> ready (model deployed) | {fig['agent_ready_s']:.2f} s | {len(starts)} | "
                f"{fig['python_s']:.2f} s | <= {AGENT_TARGET} s "
                f"{'ok' if fig['agent_ready_s'] <= AGENT_TARGET else 'MISSED'} |",
            ]
        )
        + "\n"
    )
    write_json(args.out, {**fig, "table": md})
    print(md)
    say(f"-> {args.out}")


if __name__ == "__main__":
    main()
