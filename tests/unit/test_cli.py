"""The ``edgeops`` console script, run the way a person runs it."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from edgeops import __version__
from edgeops.cli import app
from edgeops.deploy import operations, targets
from edgeops.keys import init_keys
from edgeops.schema import TIMESTAMP, schema_from_dict
from tests.unit.conftest import PLANT_FEATURES, REPO, subprocess_env

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


def test_version_flag_prints_the_installed_version(tmp_path: Path, run_cmd) -> None:
    proc = run_cmd([EDGEOPS, "--version"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == importlib.metadata.version("edgeops") + "\n"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_bash_completion_script_completes_commands_and_options(tmp_path: Path) -> None:
    script = subprocess.run(
        [EDGEOPS, "completion", "bash"], capture_output=True, text=True, env=subprocess_env()
    )
    assert script.returncode == 0, script.stderr
    (tmp_path / "edgeops.bash").write_text(script.stdout)

    def complete(*words: str) -> list[str]:
        shell = (
            f"source {tmp_path / 'edgeops.bash'}; COMP_WORDS=({' '.join(words)}); "
            f'COMP_CWORD={len(words) - 1}; _edgeops_completion edgeops; printf "%s\\n" '
            '"${COMPREPLY[@]}"'
        )
        proc = subprocess.run(
            ["bash", "-c", shell], capture_output=True, text=True, env=subprocess_env(), timeout=60
        )
        return proc.stdout.split()

    assert complete("edgeops", "dep") == ["deploy"]
    assert complete("edgeops", "status", "--js") == ["--json"]
    for shell in ("zsh", "fish"):
        proc = subprocess.run(
            [EDGEOPS, "completion", shell], capture_output=True, text=True, env=subprocess_env()
        )
        assert proc.returncode == 0 and f"_EDGEOPS_COMPLETE=complete_{shell}" in proc.stdout


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


@pytest.fixture
def fleet(tmp_path: Path) -> dict[str, Any]:
    """A targets file with two targets and the options `edgeops status` needs to read it."""
    init_keys(tmp_path / "keys")
    (tmp_path / "deploy.token").write_text("secret\n")
    with socket.socket() as s:  # a loopback port nothing listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "targets.yaml").write_text(
        f"public_key: {tmp_path / 'keys' / 'signing.pub'}\n"
        "targets:\n"
        f"  - {{name: line-1, url: 'http://127.0.0.1:{port}', canary: true,"
        f" token_file: '{tmp_path / 'deploy.token'}'}}\n"
        f"  - {{name: line-2, url: 'http://127.0.0.1:{port}', token_file: '{tmp_path / 'deploy.token'}'}}\n"
    )
    options = [
        "--params",
        REPO / "params.yaml",
        "--targets",
        tmp_path / "targets.yaml",
        "--registry",
        tmp_path / "registry.json",
        "--audit-log",
        tmp_path / "audit.jsonl",
    ]
    return {"root": tmp_path, "options": [str(o) for o in options]}


class FakeAgent:
    """An AgentClient whose agents answer from ``ANSWERS`` (target name -> /v1/status)."""

    ANSWERS: dict[str, dict[str, Any]] = {}
    sent: list[Any] = []

    def __init__(self, target: targets.Target, timeout: float = 30.0) -> None:
        self.target = target

    def status(self) -> dict[str, Any]:
        return self.ANSWERS[self.target.name]

    def ready(self) -> dict[str, Any] | None:
        active = self.ANSWERS[self.target.name]["active"]
        return {"status": "ready", "model_version": active["version"]} if active else None

    def predict(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        self.sent.append(rows)
        return {"model_version": "1.0.0", "predictions": [{"label": 0}] * len(rows)}


def agent_status(version: str | None, probation: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"active": version and {"version": version}, "previous": None, "probation": probation}


def test_status_exits_9_after_the_whole_table_when_a_target_is_unreachable(
    fleet: dict[str, Any], run_cmd
) -> None:
    proc = run_cmd([EDGEOPS, "status", *fleet["options"]], cwd=fleet["root"])
    assert proc.returncode == operations.EXIT_UNHEALTHY == 9, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["TARGET", "ACTIVE", "PREVIOUS", "HEALTH", "LAST_SEEN", "STAGE"]
    assert [line.split()[0] for line in lines[1:]] == ["line-1", "line-2"]
    assert all("unreachable" in line for line in lines[1:])
    assert "target line-1: agent at http://127.0.0.1:" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = run_cmd([EDGEOPS, "status", "--json", "-t", "line-2", *fleet["options"]], fleet["root"])
    assert proc.returncode == 9
    doc = json.loads(proc.stdout)  # one document
    assert doc["ok"] is False
    assert [(t["target"], t["health"], t["ok"]) for t in doc["targets"]] == [
        ("line-2", "unreachable", False)
    ]


def test_status_exits_0_when_every_target_is_ready(fleet: dict[str, Any], monkeypatch) -> None:
    monkeypatch.setattr(operations, "AgentClient", FakeAgent)
    monkeypatch.setattr(
        FakeAgent,
        "ANSWERS",
        {
            "line-1": agent_status(
                "1.0.0", probation={"version": "1.0.0", "requests": 3, "errors": 0}
            ),
            "line-2": agent_status("1.0.0"),
        },
    )
    result = CliRunner().invoke(app, ["status", "--json", *fleet["options"]])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert [(t["health"], t["probation"], t["problem"]) for t in doc["targets"]] == [
        ("ready", True, None),
        ("ready", False, None),
    ]


@pytest.mark.parametrize(
    ("answer", "health", "problem"),
    [
        (agent_status(None), "no model", "serves no model yet"),
        (
            agent_status("2.0.0", {"version": "2.0.0", "requests": 12, "errors": 2}),
            "probation errors",
            "2 model error(s) in 12 requests on probation of 2.0.0",
        ),
    ],
)
def test_status_exits_9_for_an_unhealthy_target(
    fleet: dict[str, Any], monkeypatch, answer: dict[str, Any], health: str, problem: str
) -> None:
    monkeypatch.setattr(operations, "AgentClient", FakeAgent)
    monkeypatch.setattr(FakeAgent, "ANSWERS", {"line-1": agent_status("1.0.0"), "line-2": answer})
    result = CliRunner().invoke(app, ["status", *fleet["options"]])
    assert result.exit_code == 9, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert set(rows) == {"line-1", "line-2"}
    assert " ready " in rows["line-1"] and health in rows["line-2"]
    assert result.stderr.startswith(f"target line-2: {problem}")


def test_predict_prints_one_json_document(fleet: dict[str, Any], monkeypatch) -> None:
    bundle = fleet["root"] / "bundle"
    bundle.mkdir()
    golden = {"torque_nm": 40.0, "machine_type": "M"}
    manifest = {"golden": {"examples": [{"inputs": golden}]}}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(targets, "AgentClient", FakeAgent)
    monkeypatch.setattr(FakeAgent, "sent", [])
    options = [*fleet["options"][:4], "--bundle", str(bundle)]

    result = CliRunner().invoke(app, ["predict", "-t", "line-1", *options])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"model_version": "1.0.0", "predictions": [{"label": 0}]}
    assert result.stderr.startswith("line-1 <- the first golden example of")
    assert FakeAgent.sent == [[golden]]

    rows = json.dumps([golden, golden])
    result = CliRunner().invoke(app, ["predict", "-t", "line-1", "--rows", rows, *options])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["predictions"]) == 2
    assert "line-1 <- --rows: 2 rows" in result.stderr

    result = CliRunner().invoke(app, ["predict", "-t", "line-1", "--rows", "[1, 2]", *options])
    assert result.exit_code == 2
    assert result.stdout == "" and "--rows must be a JSON list of rows" in result.stderr
