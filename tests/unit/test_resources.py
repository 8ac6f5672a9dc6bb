"""resources: the thread setting (auto, a number, a bad value), limits applied in a fresh
interpreter, and the per-stage record in reports/resources.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeops import resources
from edgeops.errors import EdgeopsError


def test_auto_and_absent_mean_the_cores_this_process_is_given() -> None:
    cores = len(os.sched_getaffinity(0))
    assert resources.configured_threads({}) <= cores
    assert resources.configured_threads({"resources": {"threads": "auto"}}) == (
        resources.available_cores()
    )
    assert resources.configured_threads({"resources": {"threads": 3}}) == 3


@pytest.mark.parametrize("bad", [0, -2, 1.5, "two", True])
def test_a_bad_thread_setting_is_one_clear_error(bad: object) -> None:
    with pytest.raises(EdgeopsError) as err:
        resources.configured_threads({"resources": {"threads": bad}})
    assert "resources.threads" in str(err.value) and "auto" in err.value.fix


def test_limits_reach_loaded_libraries_and_children_in_a_fresh_interpreter() -> None:
    code = """
import json, os, subprocess, sys
import numpy  # loaded before the limit: threadpoolctl limits it
from edgeops import resources
resources.limit_threads(1)
import sklearn.ensemble  # OpenMP loaded after: the environment sizes it
import pyarrow
child = subprocess.run([sys.executable, "-c", "import os; print(os.environ['OMP_NUM_THREADS'])"],
                       capture_output=True, text=True).stdout.strip()
print(json.dumps({"pools": resources.thread_pools(), "child": child,
                  "current": resources.current_threads(),
                  "wait": os.environ["OMP_WAIT_POLICY"]}))
"""
    env = {k: v for k, v in os.environ.items() if "THREADS" not in k and k != "OMP_WAIT_POLICY"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["child"] == "1" and seen["current"] == 1 and seen["wait"] == "PASSIVE"
    apis = {p["api"] for p in seen["pools"]}
    assert "pyarrow" in apis and any(a.startswith("blas/") for a in apis), apis
    assert {p["threads"] for p in seen["pools"]} == {1}, seen["pools"]


def test_auto_follows_the_cpu_affinity_of_the_process() -> None:
    code = (
        "import os; os.sched_setaffinity(0, {0}); from edgeops import resources; "
        "print(resources.configured_threads({'resources': {'threads': 'auto'}}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_each_stage_keeps_its_entry_and_a_damaged_record_is_replaced(tmp_path: Path) -> None:
    report = tmp_path / "reports/resources.json"
    resources.record("ingest", resources.Usage(), 2, report)
    resources.record("train", resources.Usage(), 1, report)
    stages = json.loads(report.read_text())["stages"]
    assert set(stages) == {"ingest", "train"}
    assert stages["train"]["threads"] == 1
    assert {"wall_s", "cpu_s", "peak_rss_mb", "thread_pools", "finished"} <= set(stages["train"])
    report.write_text("{not json")
    resources.record("split", resources.Usage(), 2, report)
    assert set(json.loads(report.read_text())["stages"]) == {"split"}
    assert [p.name for p in report.parent.iterdir() if p.name.startswith(".resources.json")] == []
