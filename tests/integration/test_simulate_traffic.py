"""`edgeops simulate --target`: simulated plant traffic to a real agent on loopback, with the true
labels sent back later as feedback. The command runs as a person runs it (a subprocess)."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeops.deploy.targets import AgentClient, Target
from edgeops.edge.store import tar_bundle
from edgeops.monitor.simulate import build_rows
from tests.agent_process import DEPLOY_TOKEN, EDGEOPS, AgentProcess, free_port
from tests.bundles import PARAMS, REPO, make_bundle
from tests.conftest import tool_env

pytestmark = pytest.mark.integration

TOKEN_ENV = "EDGEOPS_TEST_SIMULATE_TOKEN"
FEATURES = [c["name"] for c in PARAMS["validate"]["schema"]["columns"]][1:-1]  # no time, no label
SUMMARY = re.compile(
    r"line-1: (\d+) request\(s\), (\d+) row\(s\), feedback on (\d+) row\(s\)(?:, (\d+) flipped)?, "
    r"(\d+) error\(s\), [\d.]+ s, model version\(s\) 1\.0\.0 \((\d+)\)"
)


@pytest.fixture(scope="module")
def plant(tmp_path_factory, signing_keys: Path):
    """An agent serving a real bundle, and a targets file naming it (and a dead one)."""
    root = tmp_path_factory.mktemp("simulate")
    agent = AgentProcess(root / "state", signing_keys / "signing.pub").start()
    target = Target(name="line-1", url=agent.url, token_env=TOKEN_ENV)
    (root / "targets.yaml").write_text(
        yaml.safe_dump(
            {
                "targets": [
                    {"name": "line-1", "url": agent.url, "token_env": TOKEN_ENV},
                    {
                        "name": "dead",
                        "url": f"http://127.0.0.1:{free_port()}",
                        "token_env": TOKEN_ENV,
                    },
                ]
            }
        )
    )
    bundle = make_bundle(root / "v1", signing_keys, "1.0.0")
    env = {**tool_env(), TOKEN_ENV: DEPLOY_TOKEN}
    client = AgentClient(target)
    client._token = DEPLOY_TOKEN  # this process has no TOKEN_ENV; the command's process has
    client.upload(tar_bundle(bundle), "test", "pytest")
    yield {"root": root, "client": client, "env": env}
    agent.stop()


def simulate(plant: dict[str, Any], *args: str) -> subprocess.CompletedProcess:
    cmd = [
        EDGEOPS,
        "simulate",
        "--params",
        str(REPO / "params.yaml"),
        "--targets",
        str(plant["root"] / "targets.yaml"),
        *args,
    ]
    return subprocess.run(cmd, env=plant["env"], capture_output=True, text=True, timeout=120)


def new_log_items(
    client: AgentClient, run: Callable[[], subprocess.CompletedProcess]
) -> tuple[subprocess.CompletedProcess, list[dict[str, Any]]]:
    """``run()``, and the log rows it wrote (the agent's log is shared by the tests)."""
    before = log_items(client)
    after = before[-1]["id"] if before else 0
    proc = run()
    assert proc.returncode == 0, proc.stderr
    return proc, log_items(client, after)


def log_items(client: AgentClient, after: int = 0) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while page := client.logs(after)["items"]:
        items += page
        after = page[-1]["id"]
    return items


def counts(proc: subprocess.CompletedProcess) -> dict[str, int]:
    m = SUMMARY.search(proc.stdout)
    assert m, proc.stdout + proc.stderr
    keys = ("requests", "rows", "feedback", "flipped", "errors", "answered")
    return {k: int(v or 0) for k, v in zip(keys, m.groups(), strict=True)}


def truth(rows: int, seed: int, scenario: str = "baseline") -> list[Any]:
    return build_rows(PARAMS, scenario, rows, seed)[1]


def test_rows_reach_the_log_and_a_share_gets_its_true_label(plant) -> None:
    proc, items = new_log_items(
        plant["client"],
        lambda: simulate(
            plant, "--target", "line-1", "--rows", "300", "--seed", "5", "--feedback-share", "0.3"
        ),
    )
    c = counts(proc)
    assert c == {
        "requests": 300,
        "rows": 300,
        "feedback": 90,
        "flipped": 0,
        "errors": 0,
        "answered": 300,
    }
    assert "seed 5" in proc.stderr and "Traceback" not in proc.stderr
    assert len(items) == 300 and all(sorted(i["features"]) == sorted(FEATURES) for i in items)
    labelled = [(k, i) for k, i in enumerate(items) if i["feedback"] is not None]
    assert len(labelled) == c["feedback"]
    y = truth(300, 5)
    assert all(i["feedback"] == str(y[k]) for k, i in labelled)  # the true label, row by row


def test_delayed_feedback_arrives_after_the_delay(plant) -> None:
    start = time.monotonic()
    proc, items = new_log_items(
        plant["client"],
        lambda: simulate(
            plant,
            "--target",
            "line-1",
            "--rows",
            "40",
            "--batch",
            "4",
            "--feedback-share",
            "0.5",
            "--feedback-delay",
            "1.5",
            "--scenario",
            "hot_summer",
        ),
    )
    assert time.monotonic() - start >= 1.5
    c = counts(proc)
    assert c["requests"] == 10 and c["rows"] == 40 and c["feedback"] == 20  # 5 requests x 4 rows
    assert "waiting" in proc.stderr and "pending feedback" in proc.stderr
    seed = int(re.search(r"seed (\d+)", proc.stderr).group(1))
    assert seed != 42  # a random seed, printed, never the training seed
    labelled = [i for i in items if i["feedback"] is not None]
    assert len(labelled) == 20 and len({i["request_id"] for i in labelled}) == 5
    assert all(i["feedback_ts"] - i["ts"] >= 1.5 for i in labelled)
    y = truth(40, seed, "hot_summer")
    assert all(i["feedback"] == str(y[k]) for k, i in enumerate(items) if i["feedback"])


def test_label_flip_changes_the_labels(plant) -> None:
    proc, items = new_log_items(
        plant["client"],
        lambda: simulate(
            plant,
            "--target",
            "line-1",
            "--rows",
            "50",
            "--seed",
            "9",
            "--feedback-share",
            "1",
            "--label-flip",
            "1",
            "--rate",
            "200",
        ),
    )
    c = counts(proc)
    assert c["feedback"] == c["flipped"] == 50
    y = truth(50, 9)
    assert all(i["feedback"] == str(1 - y[k]) for k, i in enumerate(items))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "nope"], "unknown target(s) ['nope']"),
        (["--target", "dead"], "target dead: agent at http://127.0.0.1:"),
        (["--out", "x.csv", "--target", "line-1"], "--out FILE or --target NAME"),
    ],
)
def test_a_bad_target_is_one_clear_error(plant, args: list[str], message: str) -> None:
    proc = simulate(plant, *args, "--rows", "5")
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("error:") == 1
    if "dead" in args:
        assert "unreachable" in proc.stderr and "stopped after 0 of 5 request(s)" in proc.stderr
