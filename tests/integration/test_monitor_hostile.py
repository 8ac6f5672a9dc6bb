"""One hostile agent cannot blind monitoring: every way a device can lie to the collector is
named within its time limit, memory stays bounded, and the healthy target is still collected and
judged; two monitors on one store store every row once.

A real trained workspace (6,000 simulated rows), one real agent serving its bundle (``healthy``)
and one hostile server per behaviour (tests/hostile_agent.py), all on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeops.deploy.targets import AgentClient, Target
from edgeops.monitor.simulate import build_rows, send_traffic
from edgeops.monitor.store import ProductionStore, parts
from tests.agent_process import DEPLOY_TOKEN, EDGEOPS, AgentProcess, free_port
from tests.conftest import BIN, REPO, init_project, tool_env
from tests.prefect_stack import set_params, set_params_file, sh

pytestmark = pytest.mark.integration

DVC = str(BIN / "dvc")
TOKEN_ENV = "EDGEOPS_TEST_HOSTILE_TOKEN"
COLLECT_SECONDS = 8
#: each hostile behaviour and what the monitor must say of it
HOSTILE = {
    "stuck": "row ids do not advance",
    "backwards": "row ids do not advance",
    "trickle": f"did not send its answer within its time limit of {COLLECT_SECONDS} s",
    "huge": "over the limit of",
    "long_string": "over the limit of",
    "string_ids": "id is 'abc'",
    "int_category": "feature 'machine_type' is 3, not text",
    "nested": "feature 'torque_nm' is {'value': 40, 'unit': 'Nm'}, not a number",
    "redirect": "answered 302 redirecting to",
    "server_error": "HTTP 500",
    "deep_json": "that are not JSON",
}
#: memory: the monitor run with every hostile agent against the same run with the healthy one
#: alone (measured side by side: 246 vs ~240 MB here). What the hostile agents send may add
#: at most about two pages' byte limit (16 MiB each here) and their parsing; a 300 MB page read
#: whole took 1.66 GB before pages had a byte limit.
MAX_EXTRA_MB = 150
MAX_RSS_MB = 1200


@pytest.fixture(scope="module")
def world(tmp_path_factory, signing_keys: Path):
    root = tmp_path_factory.mktemp("hostile")
    ws = init_project(root / "workspace")
    set_params(
        ws,
        **{
            "ingest.simulator.rows": 6000,
            "export.latency_repeats": 0,
            "train.hist_gradient_boosting.max_iter": 50,
            "deploy.watch_seconds": 0.5,
            "monitor.window.rows": 300,
            "monitor.window.min_rows": 200,
            "monitor.collect_seconds": COLLECT_SECONDS,
            "monitor.max_page_mb": 16,
            "monitor.cooldown_hours": 0,
        },
    )
    sh(["git", "commit", "-qam", "hostile test workspace"], ws)
    sh([DVC, "repro"], ws)
    healthy = AgentProcess(root / "healthy" / "state", signing_keys / "signing.pub")
    healthy.state_dir.parent.mkdir(parents=True)
    healthy.start()
    record = root / "redirected.jsonl"
    procs: dict[str, subprocess.Popen] = {}
    urls: dict[str, str] = {}

    def hostile(mode: str, *extra: str) -> str:
        port = free_port()
        procs[mode] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.hostile_agent",
                "--port",
                str(port),
                "--mode",
                mode,
                *extra,
            ],
            cwd=REPO,
            env=tool_env(),
        )
        return f"http://127.0.0.1:{port}"

    elsewhere = hostile("record", "--record", str(record))
    for mode in HOSTILE:
        urls[mode] = hostile(mode, *(("--redirect-to", elsewhere) if mode == "redirect" else ()))
    for url in [*urls.values(), elsewhere]:
        _wait_listening(url)
    targets = [{"name": "healthy", "url": healthy.url, "token_env": TOKEN_ENV, "canary": True}]
    targets += [{"name": m, "url": u, "token_env": TOKEN_ENV} for m, u in urls.items()]
    (ws / "deploy/targets.yaml").write_text(
        yaml.safe_dump({"public_key": str(signing_keys / "signing.pub"), "targets": targets})
    )
    env = {**tool_env(), TOKEN_ENV: DEPLOY_TOKEN}
    sh([EDGEOPS, "deploy", "--target", "healthy", "--force", "--reason", "test"], ws, env=env)
    os.environ[TOKEN_ENV] = DEPLOY_TOKEN
    try:
        yield {"ws": ws, "env": env, "healthy": healthy, "record": record}
    finally:
        os.environ.pop(TOKEN_ENV, None)
        healthy.stop()
        for p in procs.values():
            p.kill()
            p.wait()


def _wait_listening(url: str) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/nothing", timeout=1)
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not start")


def healthy_client(world: dict[str, Any]) -> AgentClient:
    return AgentClient(Target("healthy", world["healthy"].url, token_env=TOKEN_ENV))


def traffic(world: dict[str, Any], rows: int, seed: int) -> None:
    params = yaml.safe_load((world["ws"] / "params.yaml").read_text())
    records, labels, classes = build_rows(params, "baseline", rows, seed)
    sent = send_traffic(
        healthy_client(world),
        records,
        labels,
        seed=seed,
        classes=classes,
        batch=50,
        feedback_share=0.2,
    )
    assert sent["errors"] == 0, sent


MEASURED = (
    "import resource, sys\n"
    "from edgeops.cli import main\n"
    "sys.argv = ['edgeops', *sys.argv[1:]]\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    "    print(f'MAXRSS_KB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}', file=sys.stderr)\n"
)


def monitor(world: dict[str, Any], *args: str, measured: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-c", MEASURED] if measured else [EDGEOPS]
    return subprocess.Popen(
        [*cmd, "monitor", *args],
        cwd=world["ws"],
        env=world["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def peak_rss_mb(err: str) -> float:
    return int(err.rsplit("MAXRSS_KB ", 1)[1].split()[0]) / 1024


def test_each_hostile_agent_is_named_in_time_and_the_healthy_one_is_judged(world) -> None:
    traffic(world, 400, seed=1)
    alone = monitor(world, "--target", "healthy", "--json", measured=True)
    out, err = alone.communicate(timeout=300)
    assert alone.returncode == 0, out + err
    baseline_mb = peak_rss_mb(err)
    traffic(world, 400, seed=3)
    started = time.monotonic()
    proc = monitor(world, "--all", "--json", measured=True)
    out, err = proc.communicate(timeout=300)
    took = time.monotonic() - started
    assert proc.returncode == 9, out + err  # judged, but targets were set aside
    assert "Traceback" not in err, err
    result = json.loads(out)
    for mode, said in HOSTILE.items():
        t = result["targets"][mode]
        assert t["decision"] in ("misbehaving", "unreachable"), (mode, t)
        assert said in t["reasons"][0], (mode, t["reasons"])
        assert mode in result["unreachable"]
    assert result["targets"]["trickle"]["decision"] == "unreachable"  # too slow, not malformed
    assert result["targets"]["server_error"]["decision"] == "unreachable"  # its own error
    # the healthy agent: collected and judged on its window
    good = result["targets"]["healthy"]
    assert good["decision"] == "keep", good
    assert good["collected"]["rows"] >= 400 and good["window"]["rows"] == 300
    assert good["drift"]["columns"] and good["quality"] is not None
    # one page at most from an agent before its cursor stopped advancing: never a loop
    store = ProductionStore(world["ws"] / "data/production")
    for mode, rows in (("stuck", 5000), ("backwards", 100)):
        (series,) = store.series(mode)
        assert [(p.first, p.last) for p in parts(series, "rows")] == [(1, rows)]
    for mode in (
        "trickle",
        "huge",
        "long_string",
        "string_ids",
        "int_category",
        "nested",
        "server_error",
        "deep_json",
    ):
        stored = [p for s in store.series(mode) for p in parts(s, "rows")]
        assert sum(p.last - p.first + 1 for p in stored) <= 1, (mode, stored)
    # the redirect was not followed: nothing reached the other address, no token went there
    reached = [json.loads(line) for line in world["record"].read_text().splitlines()]
    assert [r for r in reached if r["path"] != "/nothing"] == [], reached  # our start-up probe
    # within the time limit (the trickle's 8 s is the longest wait), memory bounded
    assert took < COLLECT_SECONDS + 90, took
    peak_mb = peak_rss_mb(err)
    print(
        f"monitor peak RSS {peak_mb:.0f} MB with the hostile agents, {baseline_mb:.0f} MB with "
        f"the healthy one alone; {took:.1f} s"
    )
    assert peak_mb - baseline_mb < MAX_EXTRA_MB and peak_mb < MAX_RSS_MB, (peak_mb, baseline_mb)
    summary = (world["ws"] / "reports/monitoring/summary.md").read_text()
    assert "## huge: misbehaving" in summary and "## healthy: keep" in summary


def test_two_monitors_at_once_store_every_row_exactly_once(world) -> None:
    import pandas as pd

    traffic(world, 3000, seed=2)
    params = world["ws"] / "params-two.yaml"  # the workspace is the params file's folder
    params.write_text((world["ws"] / "params.yaml").read_text())
    set_params_file(params, {"monitor.page_rows": 50})
    args = ("--target", "healthy", "--params", str(params), "--json")
    procs = [monitor(world, *args) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode in (0, 5), out + err
    assert any("waiting for another collection of this store" in err for _, err in outs), outs
    logged, after = [], 0
    while page := healthy_client(world).logs(after=after, limit=5000)["items"]:
        logged += [it["id"] for it in page]
        after = page[-1]["id"]
    store = ProductionStore(world["ws"] / "data/production")
    frames = [pd.read_parquet(p.path) for s in store.series("healthy") for p in parts(s, "rows")]
    ids = pd.concat(frames)["_id"]
    assert ids.is_unique, ids[ids.duplicated()].tolist()[:10]
    assert sorted(ids) == logged
