"""Fixtures shared by the unit tests: the demo schema from params.yaml, small simulated plants."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeops.offline import TELEMETRY_OFF
from edgeops.schema import Schema, schema_from_dict
from edgeops.sources.simulator import simulate

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ROWS = 3000

#: the demo schema's feature columns, in schema order
PLANT_FEATURES = [
    "machine_type",
    "product_line",
    "air_temp_k",
    "process_temp_k",
    "spindle_speed_rpm",
    "torque_nm",
    "tool_wear_min",
    "vibration_mm_s",
]


@pytest.fixture(scope="session")
def params() -> dict[str, Any]:
    """The repository's params.yaml (read only: tests copy before changing)."""
    return yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture(scope="session")
def plant_schema(params: dict[str, Any]) -> Schema:
    """The reviewed demo plant schema (params.yaml, validate.schema)."""
    return schema_from_dict(params["validate"]["schema"])


@pytest.fixture(scope="session")
def _plant() -> Any:
    return simulate(rows=ROWS, seed=7)


@pytest.fixture
def plant_df(_plant: Any) -> Any:
    """3,000 simulated readings; a fresh copy per test, so tests may damage it."""
    return _plant.copy()


@pytest.fixture(scope="session")
def wear_band(_plant: Any, params: dict[str, Any]) -> tuple[Any, Schema]:
    """A 3-class problem: the tool-wear band (low/mid/high) from the other sensors.

    Tool wear itself and the failure label are dropped from the features via ``drop``.
    """
    import pandas as pd

    df = _plant.copy()
    bands = pd.cut(df["tool_wear_min"], [-1, 80, 160, 10_000], labels=["low", "mid", "high"])
    df["wear_band"] = bands.astype(str)
    raw = {
        "target": "wear_band",
        "min_rows": 100,
        "drop": ["failure", "tool_wear_min"],
        "columns": [
            *params["validate"]["schema"]["columns"],
            {"name": "wear_band", "type": "categorical", "categories": ["low", "mid", "high"]},
        ],
    }
    return df, schema_from_dict(raw)


@pytest.fixture(scope="session")
def fast_train_cfg(params: dict[str, Any]) -> dict[str, Any]:
    """The params.yaml train section with fewer boosting rounds / trees, to keep the suite fast."""
    cfg = yaml.safe_load(yaml.safe_dump(params["train"]))  # deep copy
    cfg["hist_gradient_boosting"]["max_iter"] = 40
    cfg["random_forest"]["n_estimators"] = 40
    return cfg


def subprocess_env() -> dict[str, str]:
    """Environment for child processes: this venv first on PATH, telemetry off."""
    env = dict(os.environ)
    env.update(TELEMETRY_OFF)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def run_cmd():
    """Run a command (never raises); return the CompletedProcess with text stdout/stderr."""

    def _run(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(a) for a in args],
            cwd=cwd,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return _run
