"""The ``edgeops`` console script, run the way a person runs it."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pandas as pd
import yaml

from edgeops import __version__
from edgeops.schema import TIMESTAMP, schema_from_dict
from tests.unit.conftest import PLANT_FEATURES

EDGEOPS = Path(sys.executable).parent / "edgeops"
#: what `import edgeops.cli` must not pull in: `edgeops --help` and the edge agent stay fast
HEAVY = {"great_expectations", "evidently", "prefect", "sklearn", "pandas"}


def test_help_lists_the_commands(tmp_path: Path, run_cmd) -> None:
    proc = run_cmd([EDGEOPS, "--help"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("simulate", "schema", "version"):
        assert name in proc.stdout


def test_version(tmp_path: Path, run_cmd) -> None:
    proc = run_cmd([EDGEOPS, "version"], cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.strip() == __version__


def test_importing_the_cli_loads_no_heavy_library(tmp_path: Path, run_cmd) -> None:
    proc = run_cmd([sys.executable, "-X", "importtime", "-c", "import edgeops.cli"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    modules = {line.rsplit("|", 1)[-1].strip() for line in lines}
    assert "edgeops.cli" in modules  # the measurement worked
    top_level = {m.split(".")[0] for m in modules}
    assert not top_level & HEAVY, sorted(top_level & HEAVY)


def test_simulate_then_schema_infer_gives_a_usable_schema(tmp_path: Path, run_cmd) -> None:
    proc = run_cmd([EDGEOPS, "simulate", "-o", "x.csv", "--rows", "500"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 500 rows (baseline) to x.csv" in proc.stderr
    assert len(pd.read_csv(tmp_path / "x.csv")) == 500

    proc = run_cmd([EDGEOPS, "schema", "infer", "x.csv", "--target", "failure"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# proposed from x.csv (500 rows)")
    schema = schema_from_dict(yaml.safe_load(proc.stdout))
    assert schema.target == "failure"
    assert schema.classes == [0, 1]
    assert schema.column("timestamp").type == TIMESTAMP
    assert [c.name for c in schema.features] == PLANT_FEATURES
    assert set(schema.column("machine_type").categories) == {"L", "M", "H"}


def test_schema_infer_writes_a_file(tmp_path: Path, run_cmd) -> None:
    assert (
        run_cmd([EDGEOPS, "simulate", "-o", "x.parquet", "--rows", "300"], tmp_path).returncode == 0
    )
    proc = run_cmd(
        [EDGEOPS, "schema", "infer", "x.parquet", "-t", "failure", "-o", "out/schema.yaml"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "wrote out/schema.yaml: 10 columns, target 'failure'" in proc.stderr
    schema = schema_from_dict(yaml.safe_load((tmp_path / "out/schema.yaml").read_text()))
    assert len(schema.columns) == 10


def test_simulate_to_sqlite(tmp_path: Path, run_cmd) -> None:
    args = [EDGEOPS, "simulate", "-o", "plant.db", "--rows", "400", "--scenario", "hot_summer"]
    proc = run_cmd([*args, "--table", "summer"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(tmp_path / "plant.db") as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM summer").fetchone()
    conn.close()
    assert count == 400


def test_simulate_rejects_an_unknown_file_type(tmp_path: Path, run_cmd) -> None:
    proc = run_cmd([EDGEOPS, "simulate", "-o", "x.xlsx", "--rows", "10"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "error: cannot write x.xlsx: unknown file type" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_simulate_rejects_an_unknown_scenario(tmp_path: Path, run_cmd) -> None:
    proc = run_cmd([EDGEOPS, "simulate", "-o", "x.csv", "--scenario", "winter"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "error: unknown simulator scenario 'winter'" in proc.stderr
    assert "hot_summer" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_schema_infer_on_a_missing_file(tmp_path: Path, run_cmd) -> None:
    proc = run_cmd([EDGEOPS, "schema", "infer", "missing.csv", "-t", "y"], cwd=tmp_path)
    assert proc.returncode != 0
    assert "error:" in proc.stderr
    assert "missing.csv does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_schema_infer_with_a_wrong_target(tmp_path: Path, run_cmd) -> None:
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_csv(tmp_path / "d.csv", index=False)
    proc = run_cmd([EDGEOPS, "schema", "infer", "d.csv", "-t", "label"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "error: target column 'label' is not in the data" in proc.stderr
    assert "Traceback" not in proc.stderr
